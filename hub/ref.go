package hub

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// DefaultTag is the quantization a reference without a tag asks for, as Ollama and
// llama.cpp's -hf pick it.
const DefaultTag = "Q4_K_M"

// latestTag is what Ollama and llama.cpp's -hf call the default quantization
// (hf.co/ORG/REPO:latest); ParseRef reads it as no tag.
const latestTag = "latest"

// Ref names a GGUF file on the Hub: ORG/REPO, then optionally ":QUANT" (a quantization
// tag such as Q4_K_M, matched case-insensitively against the file names) or ":FILE"
// (a path in the repository ending in .gguf).
type Ref struct {
	Repo string // "ORG/REPO"
	Tag  string // "" when none was given (or File is set)
	File string // "" unless the reference names a file
}

func (r Ref) String() string {
	switch {
	case r.File != "":
		return r.Repo + ":" + r.File
	case r.Tag != "":
		return r.Repo + ":" + r.Tag
	}
	return r.Repo
}

// ErrBadRef is returned by ParseRef for a reference it cannot read.
var ErrBadRef = errors.New("bad Hugging Face reference")

// repoPart is one half of a repository id as the Hub accepts it: letters, digits, '-',
// '_' and '.', not starting or ending with '-' or '.', and without "--" or "..".
var repoPart = regexp.MustCompile(`^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$`)

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// ParseRef reads "ORG/REPO[:QUANT|:FILE]", with an optional "hf:", "hf.co/" or
// "huggingface.co/" in front (as Ollama writes hf.co/ORG/REPO:QUANT). The part after
// the colon is a file when it ends in ".gguf" or contains a '/', a tag otherwise; the
// tag "latest" is no tag (the default quantization), as Ollama and llama.cpp read it.
// It returns an error wrapping ErrBadRef for anything else.
func ParseRef(s string) (Ref, error) {
	orig := s
	for _, p := range []string{"hf:", "https://", "hf.co/", "huggingface.co/"} {
		s = strings.TrimPrefix(s, p)
	}
	bad := func(why string) (Ref, error) {
		return Ref{}, fmt.Errorf("%w %q: %s (want ORG/REPO[:QUANT|:FILE.gguf])", ErrBadRef, orig, why)
	}
	repo, sel, hasSel := strings.Cut(s, ":")
	org, name, ok := strings.Cut(repo, "/")
	if !ok || strings.Contains(name, "/") {
		return bad("the repository must be ORG/REPO")
	}
	for _, p := range []string{org, name} {
		if !repoPart.MatchString(p) || strings.Contains(p, "--") || strings.Contains(p, "..") {
			return bad(fmt.Sprintf("%q is not a valid repository name part", p))
		}
	}
	r := Ref{Repo: repo}
	switch {
	case !hasSel:
	case strings.HasSuffix(strings.ToLower(sel), ".gguf") || strings.Contains(sel, "/"):
		if err := checkRepoPath(sel); err != nil {
			return bad(err.Error())
		}
		if !strings.HasSuffix(strings.ToLower(sel), ".gguf") {
			return bad(fmt.Sprintf("file %q is not a .gguf file", sel))
		}
		r.File = sel
	case strings.EqualFold(sel, latestTag):
		// No tag: the default, as Ollama and llama.cpp read ":latest".
	case tagPattern.MatchString(sel):
		r.Tag = sel
	default:
		return bad(fmt.Sprintf("%q is neither a quantization tag nor a .gguf file name", sel))
	}
	return r, nil
}

// checkRepoPath accepts a relative, clean, slash-separated path inside a repository:
// the only kind that may become a path below the model directory.
func checkRepoPath(p string) error {
	switch {
	case p == "" || len(p) > 1024:
		return fmt.Errorf("path %q: empty or too long", p)
	case strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00:"):
		return fmt.Errorf("path %q: absolute or with a backslash, colon or NUL", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." || strings.HasPrefix(seg, ".") {
			return fmt.Errorf("path %q: a segment is empty, dot or hidden", p)
		}
	}
	return nil
}

// File is a file of a repository as the Hub lists it.
type File struct {
	Path   string // slash-separated, relative to the repository root
	Size   int64
	Digest Digest // what the content must hash to
}

// Errors of Select. Each is wrapped with the repository and the GGUF files it has.
var (
	ErrNoMatch   = errors.New("no GGUF file matches")
	ErrAmbiguous = errors.New("more than one GGUF file matches")
	ErrSplit     = errors.New("split (multi-part) GGUF files are not supported")
)

// splitName is llama.cpp's name for the parts of a split model: NAME-00001-of-00003.gguf.
var splitName = regexp.MustCompile(`(?i)-\d{5}-of-\d{5}\.gguf$`)

// modelFiles returns the GGUF files of a listing that can be models: it leaves out
// multimodal projectors (mmproj*), as llama.cpp's -hf does.
func modelFiles(files []File) []File {
	var out []File
	for _, f := range files {
		base := strings.ToLower(path.Base(f.Path))
		if strings.HasSuffix(base, ".gguf") && !strings.HasPrefix(base, "mmproj") {
			out = append(out, f)
		}
	}
	return out
}

// hasTag reports whether name carries the quantization tag: the tag appears,
// case-insensitively, after the start or a '-', '.', '_' or '/', and before ".gguf", a
// '-', '.' or '/'. So Q4_K matches neither Q4_K_M nor Q4_K_S, and Q4_0 does not match
// Q4_0_4_4.
func hasTag(name, tag string) bool {
	n, t := strings.ToLower(name), strings.ToLower(tag)
	for i := 0; ; {
		j := strings.Index(n[i:], t)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(t)
		before := j == 0 || strings.ContainsRune("-._/", rune(n[j-1]))
		after := end == len(n) || strings.ContainsRune("-./", rune(n[end]))
		if before && after {
			return true
		}
		i = j + 1
	}
}

// Select picks the file a reference names from a repository's listing: the exact path
// (or base name) for a file reference; the one model GGUF carrying the tag for a tag;
// and without either, the DefaultTag file, or the only model GGUF the repository has.
// A split model is refused. Errors wrap ErrNoMatch, ErrAmbiguous or ErrSplit and list
// the GGUF files the repository has.
func Select(files []File, ref Ref) (File, error) {
	models := modelFiles(files)
	var match []File
	switch {
	case ref.File != "":
		for _, f := range models {
			if f.Path == ref.File {
				match = []File{f}
				break
			}
			if path.Base(f.Path) == ref.File {
				match = append(match, f)
			}
		}
	case ref.Tag != "":
		match = tagged(models, ref.Tag)
	default:
		match = tagged(models, DefaultTag)
		if len(match) == 0 && len(models) == 1 {
			match = models
		}
	}
	for _, f := range match {
		if splitName.MatchString(f.Path) {
			return File{}, fmt.Errorf("%s: %w (%s); specd loads single-file models: pick another quantization, or merge the parts with llama-gguf-split --merge and pass the file to -m",
				ref, ErrSplit, names(match))
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		what := "the tag " + ref.Tag
		switch {
		case ref.File != "":
			what = "the file " + ref.File
		case ref.Tag == "":
			what = "the default tag " + DefaultTag + " (name a tag: " + ref.Repo + ":QUANT)"
		}
		return File{}, fmt.Errorf("%s: %w %s; it has %s", ref.Repo, ErrNoMatch, what, listing(models))
	}
	return File{}, fmt.Errorf("%s: %w %s: %s; name one file as %s:FILE.gguf", ref.Repo, ErrAmbiguous, ref, names(match), ref.Repo)
}

// tagged returns the files carrying the tag.
func tagged(files []File, tag string) []File {
	var out []File
	for _, f := range files {
		if hasTag(f.Path, tag) {
			out = append(out, f)
		}
	}
	return out
}

func names(files []File) string {
	s := make([]string, len(files))
	for i, f := range files {
		s[i] = f.Path
	}
	return strings.Join(s, ", ")
}

func listing(models []File) string {
	if len(models) == 0 {
		return "no GGUF files"
	}
	return "these GGUF files: " + names(models)
}
