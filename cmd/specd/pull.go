package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/specd-dev/specd/hub"
	"github.com/specd-dev/specd/modelpath"
)

// hfPrefix marks a model argument that names a file on the Hugging Face Hub.
const hfPrefix = "hf:"

// pullCmd downloads a GGUF file from the Hugging Face Hub into the model directory.
func pullCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	var models string
	fs.StringVar(&models, "models", "", "model directory (default $"+modelpath.EnvVar+", else ../shared/models, else the user cache)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: specd pull [--models DIR] ORG/REPO[:QUANT|:FILE.gguf]\n\n"+
			"Downloads a GGUF file from the Hugging Face Hub ($%s, default %s; $%s authenticates)\n"+
			"into DIR/hf/ORG/REPO/ and prints its path. QUANT (default %s) picks the file by name.\n\n",
			hub.EnvEndpoint, hub.DefaultEndpoint, hub.EnvToken, hub.DefaultTag)
		fs.PrintDefaults()
	}
	// The reference may come before or after the flags.
	refs, err := parseFlagsAndArgs(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(refs) != 1 {
		return usagef("want one ORG/REPO[:QUANT|:FILE.gguf], got %d", len(refs))
	}
	ref, err := hub.ParseRef(refs[0])
	if err != nil {
		return usageError{err}
	}
	c, err := hub.FromEnv(nil)
	if err != nil {
		return usageError{err}
	}
	dir := modelpath.Dir(models)
	fmt.Fprintf(stderr, "pulling %s from %s into %s\n", ref, c.Endpoint(), dir)
	p, err := c.Pull(ctx, dir, ref, newProgress(stderr))
	if err != nil {
		return pullError(err)
	}
	fmt.Fprintf(stderr, "%s is ready: use it with -m %s%s (no network needed now) or -m %s\n", path.Base(p), hfPrefix, offlineRef(dir, ref, p), p)
	fmt.Fprintln(stdout, p)
	return nil
}

// offlineRef is the reference that finds the pulled file p without the network: ref
// itself when hub.Local resolves it to p, else one naming the file. (A pull without a
// tag takes a repository's only GGUF whatever its quantization, while offline no tag
// means hub.DefaultTag; and a tag may match more files on disk than it did on the Hub.)
func offlineRef(dir string, ref hub.Ref, p string) hub.Ref {
	if lp, ok := hub.Local(dir, ref); ok && lp == p {
		return ref
	}
	rel, err := filepath.Rel(hub.LocalPath(dir, ref.Repo, ""), p)
	if err != nil {
		return ref
	}
	return hub.Ref{Repo: ref.Repo, File: filepath.ToSlash(rel)}
}

// hubHint is what to type for a model that was not found when it reads as a Hugging
// Face repository, as llama.cpp's -hf takes one (ORG/REPO[:QUANT|:FILE.gguf]): the hf:
// form, or "" when name reads as a local path (a .gguf or .bin file, or below a
// directory that exists).
func hubHint(name string) string {
	repo, _, _ := strings.Cut(strings.ToLower(name), ":")
	if strings.HasSuffix(repo, ".gguf") || strings.HasSuffix(repo, ".bin") {
		return ""
	}
	if _, err := hub.ParseRef(name); err != nil {
		return ""
	}
	if st, err := os.Stat(strings.SplitN(name, "/", 2)[0]); err == nil && st.IsDir() {
		return ""
	}
	return "to pull it from Hugging Face as llama.cpp's -hf does: -m " + hfPrefix + name
}

// parseFlagsAndArgs parses args into fs as parseFlagsAnyOrder does, with positional
// arguments allowed before, between and after the flags, and returns them.
func parseFlagsAndArgs(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := parseFlagsAnyOrder(fs, args, stderr); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseFlagsAnyOrder parses flags up to the first argument, turning flag errors into
// usage errors, and leaves the arguments for the caller; -h prints the flags.
func parseFlagsAnyOrder(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.Usage()
			return err
		}
		if h := llamaHint(err); h != "" {
			return usagef("%w (%s)", err, h)
		}
		return usageError{err}
	}
	return nil
}

// modelFile turns a model argument into a file path; it is the one place every command
// resolves -m (and --draft-model) through. "hf:ORG/REPO[:QUANT|:FILE]" is looked up
// below DIR/hf/ without the network first, and pulled from the Hub (progress on
// progress) when it is not there; anything else goes to modelpath.Resolve. A name that
// does not resolve is a usage error.
func modelFile(ctx context.Context, dir, name string, progress io.Writer) (string, error) {
	rest, ok := strings.CutPrefix(name, hfPrefix)
	if !ok {
		p, err := modelpath.Resolve(dir, name)
		if err != nil {
			if hint := hubHint(name); hint != "" {
				return "", usagef("%w (%s)", err, hint)
			}
			return "", usageError{err}
		}
		return p, nil
	}
	ref, err := hub.ParseRef(rest)
	if err != nil {
		return "", usageError{err}
	}
	if p, ok := hub.Local(dir, ref); ok {
		return p, nil
	}
	c, err := hub.FromEnv(nil)
	if err != nil {
		return "", usageError{err}
	}
	fmt.Fprintf(progress, "%s is not in %s yet: pulling it from %s\n", ref, dir, c.Endpoint())
	p, err := c.Pull(ctx, dir, ref, newProgress(progress))
	if err != nil {
		return "", pullError(err)
	}
	return p, nil
}

// pullError adds what the user can do to a pull's error: a bad reference or a missing
// file is a usage error; an unwritable directory names the flag that moves it.
func pullError(err error) error {
	switch {
	case errors.Is(err, hub.ErrNotWritable):
		return fmt.Errorf("%w (choose another model directory with --models or $%s)", err, modelpath.EnvVar)
	case errors.Is(err, hub.ErrBadRef), errors.Is(err, hub.ErrNoMatch), errors.Is(err, hub.ErrAmbiguous),
		errors.Is(err, hub.ErrSplit), errors.Is(err, hub.ErrNotFound):
		return usageError{err}
	}
	return err
}

// newProgress shows a download as a progress bar on a terminal, as plain lines
// otherwise (a log, a pipe, CI).
func newProgress(w io.Writer) hub.Progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barProgress{w: w}
	}
	return &lineProgress{w: w, step: 10}
}

type barProgress struct {
	w    io.Writer
	name string
	bar  *progressbar.ProgressBar
}

func (b *barProgress) Wait(name string) { waitLine(b.w, name) }

func (b *barProgress) Start(name string, size, done int64) {
	if b.bar != nil { // the download starts over: a new bar in the old one's place
		b.bar.Clear()
	}
	b.name = path.Base(name)
	b.bar = progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(b.name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(b.w) }),
	)
	if done > 0 {
		b.bar.Set64(done)
	}
}

func (b *barProgress) Add(n int64) { b.bar.Add64(n) }

func (b *barProgress) Retry(err error, wait time.Duration) {
	b.bar.Clear()
	fmt.Fprintf(b.w, "%v; resuming in %v\n", err, wait)
}

func (b *barProgress) End(err error) {
	if err != nil {
		b.bar.Exit()
		return
	}
	b.bar.Finish()
}

// lineProgress prints a line at start, at every step percent, on each retry and at
// the end.
type lineProgress struct {
	w                io.Writer
	step             int64
	name             string
	size, done, next int64
}

func (l *lineProgress) Wait(name string) { waitLine(l.w, name) }

func (l *lineProgress) Start(name string, size, done int64) {
	again := l.name != ""
	l.name, l.size, l.done = path.Base(name), size, done
	l.next = l.mark()
	switch {
	case again:
		fmt.Fprintf(l.w, "%s: starting over\n", l.name)
		return
	case done > 0:
		fmt.Fprintf(l.w, "%s: %s, resuming at %s\n", l.name, mib(size), mib(done))
		return
	}
	fmt.Fprintf(l.w, "%s: %s\n", l.name, mib(size))
}

// mark is the byte count of the next step past done.
func (l *lineProgress) mark() int64 {
	if l.size <= 0 {
		return 1
	}
	pct := l.done*100/l.size/l.step*l.step + l.step
	return (pct*l.size + 99) / 100
}

func (l *lineProgress) Add(n int64) {
	l.done += n
	if l.done < l.next || l.done >= l.size {
		return
	}
	fmt.Fprintf(l.w, "%s: %d%% (%s of %s)\n", l.name, l.done*100/l.size, mib(l.done), mib(l.size))
	l.next = l.mark()
}

func (l *lineProgress) Retry(err error, wait time.Duration) {
	fmt.Fprintf(l.w, "%v; resuming in %v\n", err, wait)
}

func (l *lineProgress) End(err error) {
	if err == nil {
		fmt.Fprintf(l.w, "%s: 100%% (%s), checksum verified\n", l.name, mib(l.size))
	}
}

// waitLine says that another download of the file is running.
func waitLine(w io.Writer, name string) {
	fmt.Fprintf(w, "%s: another download of this file is running; waiting for it\n", path.Base(name))
}

// mib writes a byte count in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
