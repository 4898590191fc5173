package ollamahttp

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/openaihttp"
)

// verifiers asks the router for the models a client can request (the verifiers'),
// each once.
func (h *Handler) verifiers(r *http.Request) ([]*specdv1.ModelInfo, *Error) {
	ctx, oe := openaihttp.Outgoing(r)
	if oe != nil {
		return nil, fromOpenAI(oe)
	}
	resp, err := h.client.ListModels(ctx, &specdv1.ListModelsRequest{})
	if err != nil {
		return nil, fromStatus(err, "")
	}
	var out []*specdv1.ModelInfo
	seen := map[string]bool{}
	for _, m := range resp.GetModels() {
		if m.GetRole() == "verifier" && !seen[m.GetName()] {
			seen[m.GetName()] = true
			out = append(out, m)
		}
	}
	return out, nil
}

// tagged is a model's name as Ollama lists it, with its tag: "NAME:latest", which a
// client may send back as it is.
func tagged(name string) string { return name + ":latest" }

// details describes m as Ollama does, from what the router knows of it: a GGUF file of
// m's architecture, its parameter count in Ollama's spelling ("25.7M"), and its
// dominant tensor type in capitals ("Q8_0").
func details(m *specdv1.ModelInfo) ModelDetails {
	d := ModelDetails{Format: "gguf", Family: m.GetArchitecture(), ParameterSize: humanCount(m.GetParameters()),
		QuantizationLevel: strings.ToUpper(m.GetQuantization())}
	if d.Family != "" {
		d.Families = []string{d.Family}
	}
	return d
}

// humanCount spells a parameter count as Ollama does: 25.7M, 7.6B, 494K.
func humanCount(n uint64) string {
	for _, u := range []struct {
		div  float64
		unit string
	}{{1e12, "T"}, {1e9, "B"}, {1e6, "M"}, {1e3, "K"}} {
		if v := float64(n) / u.div; v >= 1 {
			if v >= 100 {
				return fmt.Sprintf("%.0f%s", v, u.unit)
			}
			return fmt.Sprintf("%.1f%s", v, u.unit)
		}
	}
	return fmt.Sprint(n)
}

// tags serves GET /api/tags: the models a client can request. Sizes and digests are
// not known to the router's API: 0 and "".
func (h *Handler) tags(w http.ResponseWriter, r *http.Request) {
	ms, e := h.verifiers(r)
	if e != nil {
		h.fail(w, r, e)
		return
	}
	out := ListResponse{Models: []ListModel{}}
	for _, m := range ms {
		out.Models = append(out.Models, ListModel{Name: tagged(m.GetName()), Model: tagged(m.GetName()), ModifiedAt: h.started, Details: details(m)})
	}
	writeJSON(w, http.StatusOK, out)
}

// ps serves GET /api/ps: every model served is loaded, for as long as specd runs, in
// main memory (size_vram 0). Its expires_at is what Ollama reports for a model kept
// loaded (keep_alive -1): now and the longest duration, some 292 years on; a zero
// time would read as long expired.
func (h *Handler) ps(w http.ResponseWriter, r *http.Request) {
	ms, e := h.verifiers(r)
	if e != nil {
		h.fail(w, r, e)
		return
	}
	out := ProcessResponse{Models: []ProcessModel{}}
	forever := time.Now().UTC().Add(math.MaxInt64)
	for _, m := range ms {
		out.Models = append(out.Models, ProcessModel{Name: tagged(m.GetName()), Model: tagged(m.GetName()), Details: details(m),
			ExpiresAt: forever, ContextLength: int(m.GetContextLength())})
	}
	writeJSON(w, http.StatusOK, out)
}

// show serves POST /api/show: a model's details and GGUF-style model_info (the keys
// Ollama reads the context length and parameter count from, which clients such as
// Continue use), and its capabilities: completion, and tools when the server parses
// tool calls. Its template and parameters are not known to the router's API: "".
func (h *Handler) show(w http.ResponseWriter, r *http.Request) {
	var req ShowRequest
	if e := h.readJSON(w, r, &req); e != nil {
		h.fail(w, r, e)
		return
	}
	name := cmp.Or(req.Model, req.Name)
	if name == "" {
		writeError(w, badRequest("model", "missing: name the model (GET /api/tags lists them)"))
		return
	}
	ms, e := h.verifiers(r)
	if e != nil {
		h.fail(w, r, e)
		return
	}
	if m := match(ms, name); m != nil {
		arch := cmp.Or(m.GetArchitecture(), "llama")
		caps := []string{"completion"}
		if h.tools != 0 {
			caps = append(caps, "tools")
		}
		writeJSON(w, http.StatusOK, ShowResponse{Details: details(m), Capabilities: caps, ModifiedAt: h.started, ModelInfo: map[string]any{
			"general.architecture":    arch,
			"general.parameter_count": m.GetParameters(),
			arch + ".context_length":  m.GetContextLength(),
			arch + ".vocab_size":      m.GetVocabSize(),
		}})
		return
	}
	writeError(w, notFound(name))
}

// pull serves POST /api/pull: a model specd serves is there already, which is what
// Ollama answers once a pull is done ({"status": "success"}, streamed or not); any
// other is a 501, since specd's models are files its verifiers load (`specd pull`
// fetches them where the verifier runs).
func (h *Handler) pull(w http.ResponseWriter, r *http.Request) {
	var req PullRequest
	if e := h.readJSON(w, r, &req); e != nil {
		h.fail(w, r, e)
		return
	}
	name := cmp.Or(req.Model, req.Name)
	ms, e := h.verifiers(r)
	if e != nil {
		h.fail(w, r, e)
		return
	}
	if match(ms, name) != nil {
		writeJSON(w, http.StatusOK, map[string]string{"status": "success"})
		return
	}
	writeError(w, &Error{Status: http.StatusNotImplemented, Message: fmt.Sprintf("model '%s' is not served here, and specd does not pull models over its API: "+
		"run `specd pull` where the verifier runs and start it with that model", name)})
}
