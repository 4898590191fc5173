package testmodels

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// llamaServer, when set, makes TestLlamaServerPrompts regenerate
// testdata/llama-server-b4748-prompts.json with this llama-server instead of checking it:
// go test ./internal/testmodels -run TestLlamaServerPrompts -llama-server ../shared/tools/llama.cpp-b4748/llama-server
var llamaServer = flag.String("llama-server", "", "regenerate testdata/llama-server-b4748-prompts.json with this llama-server")

// TestLlamaServerPrompts checks that the recorded llama-server ids are usable: every
// variant's model loads and each prompt has ids. With -llama-server it first rewrites
// the ids of every prompt in the file with that program's.
func TestLlamaServerPrompts(t *testing.T) {
	if *llamaServer != "" {
		regenerateServerPrompts(t, *llamaServer)
	}
	p := LlamaServerPrompts(t)
	if p.Note == "" {
		t.Error("the file has no note on how it was produced")
	}
	for _, v := range p.Variants {
		if len(v.Completions)+len(v.Chats) == 0 {
			t.Errorf("%s: no prompts", v.Name)
		}
		for _, c := range v.Completions {
			if len(c.IDs) == 0 || len(c.TokenizeIDs) == 0 {
				t.Errorf("%s: prompt %q has no ids", v.Name, c.Prompt)
			}
		}
		for _, c := range v.Chats {
			if len(c.IDs) == 0 || len(c.Messages) == 0 {
				t.Errorf("%s: conversation %v has no ids", v.Name, c.Messages)
			}
		}
		ForTest(t, v.Model)
	}
}

// regenerateServerPrompts runs tool on each variant's model and records the prompt ids
// of each of its prompts.
func regenerateServerPrompts(t *testing.T, tool string) {
	p := LlamaServerPrompts(t)
	for i := range p.Variants {
		v := &p.Variants[i]
		s := startLlamaServer(t, tool, v.Path(t))
		for j := range v.Completions {
			c := &v.Completions[j]
			c.IDs = s.promptIDs(t, "/completion", map[string]any{"prompt": c.Prompt, "n_predict": 1, "temperature": 0, "cache_prompt": false})
			c.TokenizeIDs = llamaTokenize(t, filepath.Join(filepath.Dir(tool), "llama-tokenize"), v.Path(t), c.Prompt)
		}
		for j := range v.Chats {
			c := &v.Chats[j]
			c.IDs = s.promptIDs(t, "/v1/chat/completions", map[string]any{"messages": c.Messages, "max_tokens": 1, "temperature": 0, "cache_prompt": false})
		}
		s.stop(t)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ServerPromptsFile(), out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// llamaTokenize returns the ids tool (llama-tokenize) prints for text with the model
// file at path, BOS and EOS added as it adds them by default.
func llamaTokenize(t *testing.T, tool, path, text string) []int32 {
	cmd := exec.Command(tool, "-m", path, "-p", text, "--ids", "--log-disable", "--no-escape")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	var ids []int32
	if err := json.Unmarshal(lines[len(lines)-1], &ids); err != nil {
		t.Fatalf("%s printed %q: %v", cmd, out, err)
	}
	return ids
}

// llamaServerProc is a running llama-server whose log goes to a file.
type llamaServerProc struct {
	cmd  *exec.Cmd
	base string
	log  string
	read int // bytes of the log already parsed
}

func startLlamaServer(t *testing.T, tool, model string) *llamaServerProc {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	s := &llamaServerProc{base: fmt.Sprintf("http://127.0.0.1:%d", port), log: filepath.Join(t.TempDir(), "server.log")}
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s.cmd = exec.Command(tool, "-m", model, "--jinja", "-v", "-t", "1", "-c", "512", "--host", "127.0.0.1", "--port", strconv.Itoa(port))
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := http.Get(s.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become healthy: %v", tool, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *llamaServerProc) stop(t *testing.T) {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Error(err)
	}
	_ = s.cmd.Wait()
}

// promptToken is a line of llama-server's -v log naming one prompt token of a slot.
var promptToken = regexp.MustCompile(`prompt token +(\d+): +(-?\d+) `)

// promptIDs posts body to path and returns the prompt ids the server logged for it.
func (s *llamaServerProc) promptIDs(t *testing.T, path string, body any) []int32 {
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Evaluated int `json:"tokens_evaluated"` // /completion
		Usage     struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"` // /v1/chat/completions
	}
	err = json.NewDecoder(resp.Body).Decode(&reply)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("POST %s %s: %s, %v", path, b, resp.Status, err)
	}
	n := max(reply.Evaluated, reply.Usage.PromptTokens)
	// llama.cpp logs from a thread of its own: wait for the end of the prompt.
	var fresh []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		log, err := os.ReadFile(s.log)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(log[s.read:], []byte("prompt done")); i >= 0 {
			fresh = log[s.read : s.read+i]
			s.read += i + len("prompt done")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST %s %s: no end of the prompt in the log", path, b)
		}
	}
	var ids []int32
	for _, m := range promptToken.FindAllSubmatch(fresh, -1) {
		i, _ := strconv.Atoi(string(m[1]))
		id, _ := strconv.Atoi(string(m[2]))
		if i != len(ids) {
			t.Fatalf("POST %s %s: the log names prompt token %d after %d tokens", path, b, i, len(ids))
		}
		ids = append(ids, int32(id))
	}
	// b4748 logs the first 16 prompt tokens only.
	if len(ids) == 0 || len(ids) != n {
		t.Fatalf("POST %s %s: %d prompt tokens in the log, %d in the reply (at most 16 are logged)", path, b, len(ids), n)
	}
	return slices.Clip(ids)
}
