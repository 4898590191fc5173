package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/modelpath"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// chatTemplateOptions are the flags of `specd chat-template`.
type chatTemplateOptions struct {
	models, model, template, messages string
	addGen, cont                      bool
	kwargs                            string // JSON object text; "" for none
}

func (o *chatTemplateOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.models, "models", "", "model directory (default $"+modelpath.EnvVar+", else ../shared/models, else the user cache)")
	fs.StringVar(&o.model, "m", "", "GGUF model or vocabulary: its tokenizer.chat_template, and its BOS and EOS text as bos_token and eos_token")
	fs.StringVar(&o.model, "model", "", "same as -m")
	fs.StringVar(&o.template, "template", "", "Jinja chat template file (instead of the model's)")
	fs.StringVar(&o.messages, "messages", "", `JSON file of the conversation: [{"role": "user", "content": "Hi"}, ...] (- for standard input)`)
	fs.BoolVar(&o.addGen, "add-generation-prompt", false, "end with the opening of an assistant turn (the API's default; Hugging Face's is off)")
	fs.BoolVar(&o.cont, "continue-final-message", false, "end right after the final (assistant) message's content, which the model would continue (vLLM's continue_final_message)")
	fs.StringVar(&o.kwargs, "chat-template-kwargs", "", `JSON object of extra template variables, e.g. '{"enable_thinking": false}' (vLLM's chat_template_kwargs)`)
}

func (o *chatTemplateOptions) validate() error {
	switch {
	case o.model == "" && o.template == "":
		return usagef("give -m MODEL or --template FILE")
	case o.messages == "":
		return usagef("no --messages file")
	case o.addGen && o.cont:
		return usagef("--continue-final-message excludes --add-generation-prompt")
	}
	if _, err := chat.ParseVars(o.kwargs); err != nil {
		return usagef("--chat-template-kwargs: %v", err)
	}
	return nil
}

// chatTemplateCmd prints a conversation rendered with a chat template, byte for byte as
// a verifier renders it before tokenizing.
func chatTemplateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chat-template", flag.ContinueOnError)
	var o chatTemplateOptions
	o.addFlags(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	msgs, err := readMessages(o.messages)
	if err != nil {
		return usageError{fmt.Errorf("--messages: %w", err)}
	}
	var tmpl *chat.Template
	if o.template != "" {
		if tmpl, err = readChatTemplate(o.template); err != nil {
			return usageError{fmt.Errorf("--template: %w", err)}
		}
	}
	vars, err := chat.ParseVars(o.kwargs) // checked by validate
	if err != nil {
		return usageError{err}
	}
	opts := chat.Options{AddGenerationPrompt: o.addGen, ContinueFinal: o.cont, Vars: vars}
	if o.model != "" {
		src, bos, eos, err := o.modelTemplate(ctx, stderr)
		if err != nil {
			return err
		}
		opts.BOS, opts.EOS = bos, eos
		if tmpl == nil {
			if src == "" {
				return fmt.Errorf("%s: %w (give one with --template)", o.model, chat.ErrNoTemplate)
			}
			if tmpl, err = chat.Parse(src); err != nil {
				return fmt.Errorf("%s: tokenizer.chat_template: %w", o.model, err)
			}
		}
	}
	text, err := tmpl.Render(ctx, msgs, opts)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, text)
	return err
}

// modelTemplate reads the model's chat template and the text of its BOS and EOS tokens
// from the GGUF metadata alone.
func (o *chatTemplateOptions) modelTemplate(ctx context.Context, progress io.Writer) (src, bos, eos string, err error) {
	path, err := modelFile(ctx, modelpath.Dir(o.models), o.model, progress)
	if err != nil {
		return "", "", "", err
	}
	f, err := gguf.Open(path)
	if err != nil {
		return "", "", "", fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	src, err = f.String("tokenizer.chat_template")
	if err != nil && !errors.Is(err, gguf.ErrNotFound) {
		return "", "", "", fmt.Errorf("%s: %w", path, err)
	}
	tok, err := ggufvocab.Load(f)
	if err != nil {
		return "", "", "", fmt.Errorf("%s: %w", path, err)
	}
	return src, tok.Piece(tok.BOS()), tok.Piece(tok.EOS()), nil // "" for a token the vocabulary lacks
}

// readChatTemplate reads and compiles a chat template file.
func readChatTemplate(path string) (*chat.Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return chat.Parse(string(b))
}

// readMessages reads a JSON array of {"role", "content"} objects (- for standard
// input); every role must be non-empty.
func readMessages(path string) ([]chat.Message, error) {
	b, err := readInput(path)
	if err != nil {
		return nil, err
	}
	var msgs []chat.Message
	if err := json.Unmarshal(b, &msgs); err != nil {
		return nil, fmt.Errorf("%s: want a JSON array of {\"role\", \"content\"}: %w", path, err)
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%s: no messages", path)
	}
	for i, m := range msgs {
		if m.Role == "" {
			return nil, fmt.Errorf("%s: messages[%d].role is empty", path, i)
		}
	}
	return msgs, nil
}
