package ollamahttp_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/ollamahttp"
	"github.com/specd-dev/specd/toolcall"
)

// TestParseOptions: each option Ollama defines is mapped exactly to specd's sampling,
// stop strings and length limit, or taken and ignored where it cannot change the
// output.
func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		opts  string
		check func(*specdv1.GenerateRequest) bool
	}{
		{`{}`, func(r *specdv1.GenerateRequest) bool {
			sp := r.GetSampling()
			return sp.GetTemperature() == 0.8 && sp.GetTopK() == 40 && sp.GetTopP() == 0.9 && sp.MinP == nil && sp.Seed == nil && r.GetMaxTokens() == 0
		}},
		{`{"temperature":0,"top_k":0,"top_p":1,"min_p":0}`, func(r *specdv1.GenerateRequest) bool {
			sp := r.GetSampling()
			return sp.GetTemperature() == 0 && sp.GetTopK() == 0 && sp.TopP == nil && sp.MinP == nil
		}},
		{`{"top_k":-1,"top_p":0.5,"min_p":0.05,"seed":42}`, func(r *specdv1.GenerateRequest) bool {
			sp := r.GetSampling()
			return sp.GetTopK() == 0 && sp.GetTopP() == 0.5 && sp.GetMinP() == 0.05 && sp.GetSeed() == 42
		}},
		{`{"seed":-1}`, func(r *specdv1.GenerateRequest) bool { return r.GetSampling().Seed == nil }},
		{`{"seed":-7}`, func(r *specdv1.GenerateRequest) bool { return r.GetSampling().GetSeed() == 1<<64-7 }},
		{`{"num_predict":-1}`, func(r *specdv1.GenerateRequest) bool { return r.GetMaxTokens() == 0 }},
		{`{"num_predict":-2}`, func(r *specdv1.GenerateRequest) bool { return r.GetMaxTokens() == 0 }},
		{`{"num_predict":12.9}`, func(r *specdv1.GenerateRequest) bool { return r.GetMaxTokens() == 12 }},
		{`{"stop":["\n","user:"],"temperature":null}`, func(r *specdv1.GenerateRequest) bool {
			return strings.Join(r.GetStop(), "|") == "\n|user:" && r.GetSampling().GetTemperature() == 0.8
		}},
		{`{"repeat_penalty":1.3,"repeat_last_n":-1}`, func(r *specdv1.GenerateRequest) bool { return r.GetSampling().GetRepetitionPenalty() == 1.3 }},
		{`{"repeat_penalty":1.3,"presence_penalty":0.5,"repeat_last_n":0}`, func(r *specdv1.GenerateRequest) bool { return r.GetSampling().RepetitionPenalty == nil }},
		{`{"repeat_penalty":1,"presence_penalty":0,"frequency_penalty":0,"typical_p":1,"tfs_z":1,"mirostat":0,"mirostat_tau":5,"penalize_newline":true}`,
			func(r *specdv1.GenerateRequest) bool { return r.GetSampling().RepetitionPenalty == nil }},
		{`{"num_thread":8,"num_gpu":1,"use_mmap":false,"num_batch":2,"main_gpu":0,"low_vram":false,"use_mlock":false,"numa":false,"num_keep":5,"rope_frequency_base":1e4}`,
			func(r *specdv1.GenerateRequest) bool { return r.GetSampling().GetTemperature() == 0.8 }},
	} {
		c, err := ollamahttp.ParseGenerate([]byte(`{"model":"m","prompt":"p","options":` + tc.opts + `}`))
		if err != nil {
			t.Errorf("options %s: %v", tc.opts, err)
			continue
		}
		if !tc.check(c.Req) {
			t.Errorf("options %s: request %v", tc.opts, c.Req)
		}
	}
}

// TestParseRefusals: what specd cannot do as Ollama would is a 400 whose message
// starts with the parameter, never dropped.
func TestParseRefusals(t *testing.T) {
	for _, tc := range []struct {
		body  string
		param string
	}{
		{`{"prompt":"p"}`, "model"},
		{`{"model":"m","prompt":"p","suffix":"s"}`, "suffix"},
		{`{"model":"m","prompt":"p","template":"{{ .Prompt }}"}`, "template"},
		{`{"model":"m","prompt":"p","images":["aGk="]}`, "images"},
		{`{"model":"m","prompt":"p","raw":true,"context":[1,2]}`, "raw"},
		{`{"model":"m","prompt":"p","raw":true,"system":"s"}`, "raw"},
		{`{"model":"m","prompt":"p","context":[-1]}`, "context"},
		{`{"model":"m","prompt":"p","think":true}`, "think"},
		{`{"model":"m","prompt":"p","think":"high"}`, "think"},
		{`{"model":"m","prompt":"p","logprobs":true,"top_logprobs":21}`, "top_logprobs"},
		{`{"model":"m","prompt":"p","logprobs":"yes"}`, "logprobs"},
		{`{"model":"m","prompt":"p","keep_alive":"soon"}`, "keep_alive"},
		{`{"model":"m","prompt":"p","format":"xml"}`, "format"},
		{`{"model":"m","prompt":"p","format":[1]}`, "format"},
		{`{"model":"m","prompt":"p","options":{"temperature":-1}}`, "options.temperature"},
		{`{"model":"m","prompt":"p","options":{"temperature":"hot"}}`, "options.temperature"},
		{`{"model":"m","prompt":"p","options":{"top_p":0}}`, "options.top_p"},
		{`{"model":"m","prompt":"p","options":{"top_k":"x"}}`, "options.top_k"},
		{`{"model":"m","prompt":"p","options":{"num_predict":-3}}`, "options.num_predict"},
		{`{"model":"m","prompt":"p","options":{"num_predict":1e300}}`, "options.num_predict"},
		{`{"model":"m","prompt":"p","options":{"stop":"x"}}`, "options.stop"},
		{`{"model":"m","prompt":"p","options":{"stop":[""]}}`, "options.stop"},
		{`{"model":"m","prompt":"p","options":{"typical_p":0.7}}`, "options.typical_p"},
		{`{"model":"m","prompt":"p","options":{"tfs_z":0.9}}`, "options.tfs_z"},
		{`{"model":"m","prompt":"p","options":{"mirostat":2}}`, "options.mirostat"},
		{`{"model":"m","prompt":"p","options":{"presence_penalty":1.5}}`, "options.presence_penalty"},
		{`{"model":"m","prompt":"p","options":{"frequency_penalty":1}}`, "options.frequency_penalty"},
		{`{"model":"m","prompt":"p","options":{"repeat_penalty":0}}`, "options.repeat_penalty"},
		{`{"model":"m","prompt":"p","options":{"repeat_last_n":-5}}`, "options.repeat_last_n"},
		{`{"model":"m","prompt":"p","options":{"repeat_penalty":1.2,"repeat_last_n":-1,"penalize_newline":false}}`, "options.penalize_newline"},
		{`{"model":"m","prompt":"p","options":{"penalize_newline":"no"}}`, "options.penalize_newline"},
		{`{"model":"m","prompt":7}`, "prompt"},
		{`{"model":"m","prompt":"p"`, "the request body"},
		{"", "missing request body"}, // Ollama's words
		{" \n", "missing request body"},
	} {
		_, err := ollamahttp.ParseGenerate([]byte(tc.body))
		var e *ollamahttp.Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.HasPrefix(e.Message, tc.param) {
			t.Errorf("ParseGenerate(%s) = %v, want a 400 about %s", tc.body, err, tc.param)
		}
	}
	for _, tc := range []struct {
		body  string
		param string
	}{
		{`{"model":"m","messages":[{"role":"robot","content":"x"}]}`, "messages"},
		{`{"model":"m","messages":[{"role":"user","content":"x","images":["aGk="]}]}`, "messages"},
		{`{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[{"function":{"name":"f"}}]}]}`, "messages"},
		{`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"arguments":{}}}]}]}`, "messages"},
		// Ollama's arguments are an object: a string of JSON text (OpenAI's shape) or
		// any other value is refused, as Ollama refuses it, not rendered as it is.
		{`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}}]}]}`, "messages"},
		{`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":[1]}}]}]}`, "messages"},
		{`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":7}}]}]}`, "messages"},
		// A last assistant message is continued, as Ollama does, but not one that made
		// tool calls: the template writes them after its content, where the cut falls.
		{`{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"Let me see.","tool_calls":[{"function":{"name":"f","arguments":{}}}]}]}`, "messages"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"retrieval","function":{"name":"f"}}]}`, "tools"},
		{`{"model":"m","messages":"hi"}`, "messages"},
		{`{"model":"m","messages":[],"options":{"num_predict":-9}}`, "options.num_predict"},
	} {
		_, err := ollamahttp.ParseChat([]byte(tc.body), toolcall.Hermes)
		var e *ollamahttp.Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.HasPrefix(e.Message, tc.param) {
			t.Errorf("ParseChat(%s) = %v, want a 400 about %s", tc.body, err, tc.param)
		}
	}
}

// TestParseFormat: "json" is a JSON object, a schema object the schema as sent.
func TestParseFormat(t *testing.T) {
	c, err := ollamahttp.ParseChat([]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"format":{"type":"object","properties":{"age":{"type":"integer"}}}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	rf := c.Req.GetResponseFormat()
	if rf.GetType() != specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA || rf.GetJsonSchema() != `{"type":"object","properties":{"age":{"type":"integer"}}}` {
		t.Errorf("schema format: %v", rf)
	}
	for _, f := range []string{`""`, `null`} {
		c, err := ollamahttp.ParseGenerate([]byte(`{"model":"m","prompt":"x","format":` + f + `}`))
		if err != nil || c.Req.GetResponseFormat() != nil {
			t.Errorf("format %s: %v %v, want free text", f, c, err)
		}
	}
}

// FuzzParse: no body makes either parser panic; every refusal is a 400, and what is
// taken is a request with a model and a prompt or messages (or a load call, which
// alone may be an unload call).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","prompt":"p","options":{"temperature":0.2,"top_k":5,"seed":3,"stop":["x"],"num_predict":-2}}`,
		`{"model":"m:latest","prompt":"p","raw":true,"format":"json","keep_alive":"5m"}`,
		`{"model":"m","prompt":"p","context":[1,2,3]}`,
		`{"model":"m","prompt":"p","system":"s","format":{"type":"object"},"stream":false}`,
		`{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`,
		`{"model":"m","messages":[],"keep_alive":-1}`,
		`{"model":"m","options":{"repeat_penalty":1.1,"repeat_last_n":-1,"num_ctx":4096}}`,
		`{"options":{"seed":1e30}}`, `[]`, `null`, `{"model":"m","prompt":"\ud800"}`,
		`{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"{"}],"think":false}`,
		`{"model":"m","messages":[{"role":"assistant","content":"x"}],"format":"json"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, parse := range map[string]func([]byte) (*ollamahttp.Call, error){
			"generate": ollamahttp.ParseGenerate,
			"chat":     func(b []byte) (*ollamahttp.Call, error) { return ollamahttp.ParseChat(b, toolcall.Llama3JSON) },
		} {
			c, err := parse(b)
			if err != nil {
				var e *ollamahttp.Error
				if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
					t.Fatalf("%s(%q) = %v, want a 400", name, b, err)
				}
				continue
			}
			if c.Model == "" || c.Req.GetSampling() == nil {
				t.Fatalf("%s(%q) took a request without a model or sampling: %v", name, b, c.Req)
			}
			if c.Unload && !c.Load {
				t.Fatalf("%s(%q): an unload call that is no load call", name, b)
			}
			if !c.Load && !c.Raw && len(c.Req.GetMessages()) == 0 {
				t.Fatalf("%s(%q): neither a load call, a raw prompt nor messages: %v", name, b, c.Req)
			}
		}
	})
}

// TestParseChatContinues: a conversation whose last message is the assistant's (with
// content) continues it, as Ollama does; think false reaches the template as Qwen3's
// enable_thinking false.
func TestParseChatContinues(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		cont       bool
		kwargs     string
	}{
		{"user last", `{"model":"m","messages":[{"role":"user","content":"Hi"}]}`, false, ""},
		{"assistant last", `{"model":"m","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}`, true, ""},
		{"assistant last, empty", `{"model":"m","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":" "}]}`, false, ""},
		{"think false", `{"model":"m","messages":[{"role":"user","content":"Hi"}],"think":false}`, false, `{"enable_thinking": false}`},
		{"think null", `{"model":"m","messages":[{"role":"user","content":"Hi"}],"think":null}`, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ollamahttp.ParseChat([]byte(tc.body), 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Req.GetContinueFinalMessage(); got != tc.cont {
				t.Errorf("continue_final_message = %v, want %v", got, tc.cont)
			}
			if got := c.Req.GetChatTemplateKwargs(); got != tc.kwargs {
				t.Errorf("chat_template_kwargs = %q, want %q", got, tc.kwargs)
			}
		})
	}
	body := `{"model":"m","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"{"}],"format":"json"}`
	var e *ollamahttp.Error
	if _, err := ollamahttp.ParseChat([]byte(body), 0); !errors.As(err, &e) || !strings.HasPrefix(e.Message, "format") {
		t.Errorf("ParseChat(%s) = %v, want a 400 about format", body, err)
	}
	for _, tc := range []struct{ body, kwargs string }{
		{`{"model":"m","prompt":"p","think":false}`, `{"enable_thinking": false}`},
		{`{"model":"m","prompt":"p","think":false,"raw":true}`, ""},
	} {
		c, err := ollamahttp.ParseGenerate([]byte(tc.body))
		if err != nil {
			t.Fatalf("ParseGenerate(%s) = %v", tc.body, err)
		}
		if got := c.Req.GetChatTemplateKwargs(); got != tc.kwargs {
			t.Errorf("ParseGenerate(%s): chat_template_kwargs %q, want %q", tc.body, got, tc.kwargs)
		}
	}
}
