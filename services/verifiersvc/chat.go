package verifiersvc

import (
	"context"
	"fmt"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/tokenizer"
)

// chatTemplate is the template a verifier renders messages with, or why it has none.
type chatTemplate struct {
	t   *chat.Template
	err error // wraps chat.ErrNoTemplate when t is nil
}

// chatTemplate returns the configured template, else m's own. A model whose template
// does not compile still serves prompts; its chat requests fail with the reason.
func (s *Server) chatTemplate(m *model.Model) *chatTemplate {
	if s.cfg.ChatTemplate != nil {
		s.logChat("chat template from --chat-template", m)
		return &chatTemplate{t: s.cfg.ChatTemplate}
	}
	if m.ChatTemplate == "" {
		s.logChat("no chat template: requests with messages will fail", m)
		return &chatTemplate{err: fmt.Errorf("%w: model %s has no tokenizer.chat_template and the verifier has no --chat-template", chat.ErrNoTemplate, m.Name)}
	}
	t, err := chat.Parse(m.ChatTemplate)
	if err != nil {
		if s.log != nil {
			s.log.Warn("the model's chat template cannot be used; requests with messages will fail (give one with --chat-template)", "model", m.Name, "err", err)
		}
		return &chatTemplate{err: fmt.Errorf("%w: model %s: its tokenizer.chat_template: %w", chat.ErrNoTemplate, m.Name, err)}
	}
	s.logChat("chat template from the model's tokenizer.chat_template", m)
	return &chatTemplate{t: t}
}

func (s *Server) logChat(msg string, m *model.Model) {
	if s.log != nil {
		s.log.Info(msg, "model", m.Name)
	}
}

// prompt renders q's messages and tokenizes the text as llama-server does a rendered
// conversation (tokenizer.ChatPrompt): the BOS text that starts it and the EOS text that
// ends it removed, special-token text parsed (the template's markup, such as
// <|im_start|>, becomes its tokens), BOS first and EOS last as the vocabulary asks.
// A rendering that tooLong refuses by its length (less the BOS and EOS text that may
// be removed) is not tokenized: its error is the answer.
func (c *chatTemplate) prompt(ctx context.Context, tok *tokenizer.Tokenizer, q *services.Request, tooLong func(field string, n int) error) ([]int32, error) {
	switch {
	case c == nil:
		return nil, chat.ErrNoTemplate
	case c.t == nil:
		return nil, c.err
	}
	text, err := c.t.Render(ctx, q.Messages, chat.Options{AddGenerationPrompt: q.AddGenerationPrompt, ContinueFinal: q.ContinueFinal, Vars: q.Vars,
		Tools: q.Tools, BOS: tok.Piece(tok.BOS()), EOS: tok.Piece(tok.EOS())})
	if err != nil {
		return nil, err // services.Status names the field
	}
	if err := tooLong("messages", len(text)-len(tok.Piece(tok.BOS()))-len(tok.Piece(tok.EOS()))); err != nil {
		return nil, err
	}
	ids := tok.ChatPrompt(text)
	if len(ids) == 0 {
		return nil, services.BadField("messages", "the chat template renders them as no text")
	}
	return ids, nil
}
