package serve_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/grammar"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
)

// TestResponseFormat: with a response format, the output through the services is a
// whole JSON document (ended by EOS) that the schema allows, and speculating with the
// draft (a fixed γ always gets its draft, constrained as the verifier is) gives plain
// decoding's tokens under the same grammar — greedy and coupled sampling alike; the
// OpenAI front door takes response_format json_schema, and vLLM's guided_json and
// structured_outputs for the same; a schema outside the subset and
// a document that cannot end (ignore_eos, no stop ids) are INVALID_ARGUMENT naming the
// field.
func TestResponseFormat(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	ctx := context.Background()
	const schema = `{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
		"mood":{"enum":["happy","sad"]}},"required":["name","age","mood"]}`
	prompt := s.target.Tok.Prompt("Tom is a boy. He is three. He is sad. As JSON: {\"name\": \"Tom\", \"age\": 3, \"mood\": \"sad\"}\n" +
		"Lily is a girl. She is five. She is happy. As JSON: ")
	const n = 160
	sf, err := grammar.SchemaFormat([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	oc := s.openaiClient()
	var accepted uint32 // draft tokens kept, over the cases
	for _, c := range []struct {
		name   string
		rf     *specdv1.ResponseFormat
		format grammar.Format
		sp     sample.Params
		mode   specdv1.VerificationMode
	}{
		{"object greedy", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT}, grammar.ObjectFormat(),
			sample.Params{TopP: 1}, specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED},
		{"schema greedy", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: schema}, sf,
			sample.Params{TopP: 1}, specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED},
		{"schema coupled", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: schema}, sf,
			sample.Params{Temperature: 0.5, TopP: 1, Seed: 5}, specdv1.VerificationMode_VERIFICATION_MODE_COUPLED},
	} {
		sp := c.sp
		sp.Grammar = c.format.Grammar(s.target.Tok)
		want := s.plainIDs(t, prompt, n, sp)
		r, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, Sampling: services.SamplingToProto(c.sp),
			ResponseFormat: c.rf, Speculation: &specdv1.SpeculationOptions{Gamma: 4, Mode: c.mode}})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.GetTokenIds(); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want plain decoding under the grammar %v", c.name, got, want)
		}
		accepted += r.GetStats().GetAcceptedTokens()
		if r.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_EOS {
			if c.sp.Greedy() {
				t.Errorf("%s: finish %v, want EOS after a whole document: %q", c.name, r.GetFinishReason(), r.GetText())
			}
			continue
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(r.GetText()), &doc); err != nil {
			t.Errorf("%s: %q is not a JSON object: %v", c.name, r.GetText(), err)
			continue
		}
		if c.format.Kind() == grammar.JSONSchema {
			if _, ok := doc["age"].(float64); !ok || (doc["mood"] != "happy" && doc["mood"] != "sad") || len(doc) != 3 {
				t.Errorf("%s: %v does not fit the schema", c.name, doc)
			}
		}
	}

	// A Pydantic model's schema (constr, conint, confloat(gt=0, lt=2.5), a date, a
	// set of Literals, a tuple of floats): speculation gives plain decoding's tokens
	// under it, and the document holds each constraint, checked here field by field.
	const kid = `{"properties":{"name":{"maxLength":12,"minLength":1,"title":"Name","type":"string"},"age":{"maximum":17,"minimum":0,"title":"Age","type":"integer"},` +
		`"height_m":{"exclusiveMaximum":2.5,"exclusiveMinimum":0,"title":"Height M","type":"number"},"born":{"format":"date","title":"Born","type":"string"},` +
		`"mood":{"enum":["happy","sad"],"title":"Mood","type":"string"},"toys":{"items":{"enum":["ball","doll","kite"],"type":"string"},"maxItems":2,"title":"Toys","type":"array","uniqueItems":true},` +
		`"pos":{"maxItems":2,"minItems":2,"prefixItems":[{"type":"number"},{"type":"number"}],"title":"Pos","type":"array"}},` +
		`"required":["name","age","height_m","born","mood","toys","pos"],"title":"Kid","type":"object"}`
	kf, err := grammar.SchemaFormat([]byte(kid))
	if err != nil {
		t.Fatal(err)
	}
	kidPrompt := s.target.Tok.Prompt("Tom is a boy. He is three. He is sad. As JSON: {\"name\": \"Tom\", \"age\": 3, \"mood\": \"sad\"}\n" +
		"Lily is a girl. She is five. She is happy. She has a ball. As JSON: ")
	for _, c := range []struct {
		name string
		sp   sample.Params
		mode specdv1.VerificationMode
	}{
		{"pydantic greedy", sample.Params{TopP: 1}, specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED},
		{"pydantic coupled", sample.Params{Temperature: 0.7, TopP: 1, Seed: 9}, specdv1.VerificationMode_VERIFICATION_MODE_COUPLED},
	} {
		const n = 320
		sp := c.sp
		sp.Grammar = kf.Grammar(s.target.Tok)
		want := s.plainIDs(t, kidPrompt, n, sp)
		r, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: kidPrompt, MaxTokens: n, Sampling: services.SamplingToProto(c.sp),
			ResponseFormat: &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: kid},
			Speculation:    &specdv1.SpeculationOptions{Gamma: 4, Mode: c.mode}})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := r.GetTokenIds(); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want plain decoding under the grammar %v", c.name, got, want)
		}
		if r.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_EOS {
			t.Errorf("%s: finish %v, want EOS after a whole document: %q", c.name, r.GetFinishReason(), r.GetText())
			continue
		}
		if err := checkKid(r.GetText()); err != nil {
			t.Errorf("%s: %q: %v", c.name, r.GetText(), err)
		}
		t.Logf("%s: %s (%d draft tokens accepted)", c.name, r.GetText(), r.GetStats().GetAcceptedTokens())
	}
	kresp, err := oc.Completions.New(ctx, openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(kidPrompt)},
		MaxTokens: openai.Int(320), Temperature: openai.Float(0)},
		option.WithJSONSet("response_format", map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "Kid", "strict": true, "schema": json.RawMessage(kid)}}))
	if err != nil {
		t.Fatalf("HTTP json_schema of a Pydantic model: %v", err)
	}
	if err := checkKid(kresp.Choices[0].Text); err != nil || kresp.Choices[0].FinishReason != "stop" {
		t.Errorf("HTTP json_schema of a Pydantic model: %q (%s): %v", kresp.Choices[0].Text, kresp.Choices[0].FinishReason, err)
	}

	// min_tokens past the document's end: the grammar ends it (min_tokens once left
	// nothing to draw, a 500 after the router's retries).
	r, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, Sampling: &specdv1.SamplingParams{MinTokens: n - 8},
		ResponseFormat: &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: schema}})
	if err != nil {
		t.Fatalf("min_tokens %d with a schema: %v", n-8, err)
	}
	if _, whole := sf.Check([]byte(r.GetText())); r.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_EOS || !whole {
		t.Errorf("min_tokens with a schema: %q (%v), want a whole document ended by EOS", r.GetText(), r.GetFinishReason())
	}
	if accepted == 0 {
		t.Errorf("no draft token was accepted in any case: the draft's proposals were not checked")
	}

	resp, err := oc.Completions.New(ctx, openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(prompt)},
		MaxTokens: openai.Int(n), Temperature: openai.Float(0)},
		option.WithJSONSet("response_format", map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "person", "strict": true, "schema": json.RawMessage(schema)}}))
	if err != nil {
		var e *openai.Error
		if errors.As(err, &e) {
			t.Fatalf("HTTP json_schema: %v: %s", err, e.RawJSON())
		}
		t.Fatal(err)
	}
	want, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n,
		ResponseFormat: &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: schema}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Text; got != want.GetText() || resp.Choices[0].FinishReason != "stop" {
		t.Errorf("HTTP json_schema: %q (%s), want the gRPC API's %q, ended", got, resp.Choices[0].FinishReason, want.GetText())
	}

	// vLLM's guided_json and structured_outputs are the same format under other
	// names: the same text; a schema outside the subset is a 400 naming the parameter
	// the client used.
	for _, extra := range []struct {
		key string
		v   any
	}{
		{"guided_json", json.RawMessage(schema)},
		{"guided_json", schema}, // vLLM also takes the schema as a string of JSON text
		{"structured_outputs", map[string]any{"json": json.RawMessage(schema)}},
	} {
		resp, err := oc.Completions.New(ctx, openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(prompt)},
			MaxTokens: openai.Int(n), Temperature: openai.Float(0)}, option.WithJSONSet(extra.key, extra.v))
		if err != nil {
			t.Fatalf("%s: %v", extra.key, err)
		}
		if got := resp.Choices[0].Text; got != want.GetText() || resp.Choices[0].FinishReason != "stop" {
			t.Errorf("%s %T: %q (%s), want response_format's %q, ended", extra.key, extra.v, got, resp.Choices[0].FinishReason, want.GetText())
		}
	}
	// The schema the openai npm package's zodResponseFormat writes for z.number().int()
	// (±2^53-1), and a Pydantic conint(ge=1, le=9): a whole document within them.
	const bounded = `{"type":"object","properties":{"age":{"type":"integer","minimum":-9007199254740991,"maximum":9007199254740991},
		"rank":{"type":"integer","minimum":1,"maximum":9}},"required":["age","rank"],"additionalProperties":false}`
	resp, err = oc.Completions.New(ctx, openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(prompt)},
		MaxTokens: openai.Int(n), Temperature: openai.Float(0)},
		option.WithJSONSet("response_format", map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "ranked", "strict": true, "schema": json.RawMessage(bounded)}}))
	if err != nil {
		t.Fatalf("integer bounds: %v", err)
	}
	var doc struct{ Age, Rank *float64 }
	if err := json.Unmarshal([]byte(resp.Choices[0].Text), &doc); err != nil || resp.Choices[0].FinishReason != "stop" || doc.Age == nil || doc.Rank == nil ||
		*doc.Age != float64(int64(*doc.Age)) || *doc.Age > 1<<53-1 || *doc.Age < -(1<<53-1) || *doc.Rank < 1 || *doc.Rank > 9 || *doc.Rank != float64(int64(*doc.Rank)) {
		t.Errorf("integer bounds: %q (%s, %v), want integers age within ±2^53-1 and rank in [1, 9]", resp.Choices[0].Text, resp.Choices[0].FinishReason, err)
	}

	// Patterns (Pydantic's constr(pattern=...), zod's .regex()), sampled: each string
	// matches its pattern as JSON Schema reads it (mood's is anchored at its start
	// alone: any text may follow).
	const patterned = `{"type":"object","properties":{"code":{"type":"string","pattern":"^[A-Z]{3}-\\d{4}$"},
		"name":{"type":"string","pattern":"^[A-Z][a-z]+$","maxLength":12},"mood":{"type":"string","pattern":"^(sad|happy)","maxLength":16}},
		"required":["name","mood","code"],"additionalProperties":false}`
	for seed := range 3 {
		resp, err = oc.Completions.New(ctx, openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(prompt)},
			MaxTokens: openai.Int(n), Temperature: openai.Float(0.8), Seed: openai.Int(int64(seed))},
			option.WithJSONSet("response_format", map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "coded", "strict": true, "schema": json.RawMessage(patterned)}}))
		if err != nil {
			t.Fatalf("patterns: %v", err)
		}
		var doc struct{ Code, Name, Mood *string }
		text := resp.Choices[0].Text
		t.Logf("patterns, seed %d: %s", seed, text)
		if err := json.Unmarshal([]byte(text), &doc); err != nil || resp.Choices[0].FinishReason != "stop" || doc.Code == nil || doc.Name == nil || doc.Mood == nil ||
			!regexp.MustCompile(`^[A-Z]{3}-\d{4}$`).MatchString(*doc.Code) || !regexp.MustCompile(`^[A-Z][a-z]+$`).MatchString(*doc.Name) ||
			utf8.RuneCountInString(*doc.Name) > 12 || !regexp.MustCompile(`^(sad|happy)`).MatchString(*doc.Mood) || utf8.RuneCountInString(*doc.Mood) > 16 {
			t.Errorf("patterns, seed %d: %q (%s, %v), want name, mood and code matching their patterns", seed, text, resp.Choices[0].FinishReason, err)
		}
	}

	_, err = oc.Completions.New(ctx, openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")},
		MaxTokens: openai.Int(4)}, option.WithJSONSet("guided_json", map[string]any{"type": "string", "pattern": "(?=a)"}))
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 400 || oe.Param != "guided_json" || !strings.HasPrefix(oe.Message, "guided_json: ") {
		t.Errorf("guided_json with a look-ahead pattern: %v; want a 400 naming guided_json", err)
	}

	for _, bad := range []struct {
		req   *specdv1.GenerateRequest
		field string
	}{
		{&specdv1.GenerateRequest{ResponseFormat: &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
			JsonSchema: `{"type":"string","pattern":"(?=a)"}`}}, "response_format.json_schema: "},
		{&specdv1.GenerateRequest{ResponseFormat: &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA}}, "response_format.json_schema: "},
		{&specdv1.GenerateRequest{ResponseFormat: &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT, JsonSchema: `{}`}}, "response_format.json_schema: "},
		{&specdv1.GenerateRequest{ResponseFormat: &specdv1.ResponseFormat{Type: 9}}, "response_format.type: "},
		{&specdv1.GenerateRequest{IgnoreEos: true, ResponseFormat: &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT}}, "response_format: "},
	} {
		bad.req.PromptIds, bad.req.MaxTokens = prompt, 4
		_, err := s.client.Complete(ctx, bad.req)
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), bad.field) {
			t.Errorf("%v: %v; want INVALID_ARGUMENT naming %q", bad.req.GetResponseFormat(), err, bad.field)
		}
	}
}

// checkKid checks a document against the Pydantic model Kid of TestResponseFormat,
// constraint by constraint, without the grammar.
func checkKid(text string) error {
	var k struct {
		Name    *string
		Age     *json.Number
		HeightM *json.Number `json:"height_m"`
		Born    *string
		Mood    *string
		Toys    []string
		Pos     []json.Number
	}
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	d.DisallowUnknownFields()
	if err := d.Decode(&k); err != nil {
		return err
	}
	if k.Name == nil || k.Age == nil || k.HeightM == nil || k.Born == nil || k.Mood == nil || k.Toys == nil || k.Pos == nil {
		return errors.New("a required field is missing")
	}
	if n := utf8.RuneCountInString(*k.Name); n < 1 || n > 12 {
		return fmt.Errorf("name of %d characters, want 1-12", n)
	}
	if age, err := k.Age.Int64(); err != nil || age < 0 || age > 17 {
		return fmt.Errorf("age %s, want an integer in [0, 17]", *k.Age)
	}
	if h, ok := new(big.Rat).SetString(string(*k.HeightM)); !ok || h.Sign() <= 0 || h.Cmp(big.NewRat(5, 2)) >= 0 {
		return fmt.Errorf("height_m %s, want within (0, 2.5)", *k.HeightM)
	}
	if _, err := time.Parse("2006-01-02", *k.Born); err != nil || len(*k.Born) != 10 {
		return fmt.Errorf("born %q, want a date: %v", *k.Born, err)
	}
	if *k.Mood != "happy" && *k.Mood != "sad" {
		return fmt.Errorf("mood %q", *k.Mood)
	}
	seen := map[string]bool{}
	for _, toy := range k.Toys {
		if seen[toy] || toy != "ball" && toy != "doll" && toy != "kite" {
			return fmt.Errorf("toys %v, want distinct ones of ball, doll, kite", k.Toys)
		}
		seen[toy] = true
	}
	if len(k.Toys) > 2 || len(k.Pos) != 2 {
		return fmt.Errorf("%d toys (at most 2), %d coordinates (2)", len(k.Toys), len(k.Pos))
	}
	return nil
}
