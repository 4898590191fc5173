// Command specd is the one binary of specd: local generation and scoring, the three
// services (router, verifier, draft), the all-in-one `up`, a client and a benchmark.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// usageError marks errors caused by the command line; they exit with code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "generate text locally with one model", runCmd},
		{"score", "teacher-forced pass over token ids: argmax, log-probs, perplexity", scoreCmd},
		{"pull", "download a GGUF model from Hugging Face: ORG/REPO[:QUANT|:FILE]", pullCmd},
		{"tokenize", "print the token ids of a text (any GGUF, a vocabulary-only one too)", tokenizeCmd},
		{"chat-template", "print a conversation (--messages FILE.json) as a chat template renders it (-m MODEL or --template FILE)", chatTemplateCmd},
		{"quantize", "convert a GGUF model's 2-D tensors to q8_0, q4_0, f16 or f32 (as llama-quantize --pure)", quantizeCmd},
		{"up", "run router, verifier and draft in one process on loopback", upCmd},
		{"router", "serve the public API, routing to verifiers and drafts", serviceCmd("router", func() service { return &routerOptions{} })},
		{"verifier", "serve the verifier (large) model", serviceCmd("verifier", func() service { return &verifierOptions{} })},
		{"draft", "serve the draft (small) model", serviceCmd("draft", func() service { return &draftOptions{} })},
		{"generate", "client: generate through a running router", generateCmd},
		{"bench", "benchmark a running router: speculation on vs off over a prompt file, or under load (--concurrency)", benchCmd},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "specd %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "specd %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "specd: unknown command %q (run specd help)\n", args[0])
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: specd <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nrun 'specd <command> -h' for a command's flags")
}

// parseFlags parses args into fs, turning flag errors into usage errors, and refuses
// arguments after the flags. A bad flag is one line on stderr (from realMain); -h
// prints the flags.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := parseFlagsAnyOrder(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// flagSet reports whether the command line set the named flag, even to its default.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
