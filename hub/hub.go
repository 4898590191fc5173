// Package hub pulls GGUF model files from the Hugging Face Hub (or a mirror that speaks
// its HTTP API) into a local model directory, the way `ollama pull hf.co/...` and
// `llama-server -hf` do: it lists a repository's files, picks one by quantization tag
// or name, downloads it with HTTP Range resume into a partial file, checks its SHA-256
// against the LFS object id the Hub reports, and renames it into place.
//
// It uses the Hub API's tree listing (GET /api/models/ORG/REPO/tree/main?recursive=true,
// paginated by Link headers) and file downloads (GET /ORG/REPO/resolve/main/PATH, which
// redirects LFS files to a CDN). It depends on the standard library and x/sys (for
// flock and free space); it knows nothing of models, terminals or flags.
package hub

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
)

// DefaultEndpoint is the Hub's address when HF_ENDPOINT is not set.
const DefaultEndpoint = "https://huggingface.co"

// Environment variables read by FromEnv, as huggingface_hub reads them.
const (
	EnvToken    = "HF_TOKEN"
	EnvEndpoint = "HF_ENDPOINT"
)

// revision is the branch files are listed and downloaded from.
const revision = "main"

// Errors of the Hub's answers, each wrapped with the status, the repository or file,
// and the Hub's own message when it gives one.
var (
	ErrUnauthorized = errors.New("unauthorized (401)") // no token, or a token the Hub rejects
	ErrForbidden    = errors.New("forbidden (403)")    // a gated repository the token may not read
	ErrNotFound     = errors.New("not found (404)")    // no such repository, revision or file
	ErrChecksum     = errors.New("checksum mismatch")  // the bytes do not hash to the Hub's digest
	ErrChanged      = errors.New("the file changed on the Hub since it was listed")
	ErrNoSpace      = errors.New("not enough disk space")
)

// Client talks to one Hub endpoint. Its zero value is not usable; build one with New or
// FromEnv.
type Client struct {
	endpoint *url.URL
	token    string
	http     *http.Client

	// Retries is how many consecutive failed attempts a download survives (each resumes
	// where the last stopped); an attempt that takes the file further than any before
	// resets the count.
	Retries int
	// RetryWait is the pause before the first retry; it doubles after each failure.
	RetryWait time.Duration
	// Stall aborts an attempt that receives no byte for this long (then it is retried).
	Stall time.Duration
	// lockPoll is how often a download waiting for another of the same file tries its
	// lock.
	lockPoll time.Duration

	fs fsys // the file system; tests substitute parts of it
}

// Options configure New. The zero value talks to DefaultEndpoint without a token.
type Options struct {
	Endpoint string // base URL of the Hub or a mirror; "" is DefaultEndpoint
	Token    string // sent as "Authorization: Bearer" to the endpoint's host only; "" is none
	// Transport carries the requests; nil is a clone of http.DefaultTransport.
	Transport http.RoundTripper
}

// New returns a client for the endpoint. A token is sent only to the endpoint's own
// scheme and host: never to a CDN a download redirects to, nor to a next-page link that
// points elsewhere (huggingface_hub, through requests, drops it on a change of host too).
func New(o Options) (*Client, error) {
	ep, err := url.Parse(cmp.Or(o.Endpoint, DefaultEndpoint))
	if err != nil {
		// Not quoted: it may hold a mirror's password, which url.Parse's error repeats.
		return nil, fmt.Errorf("%w: not a URL; want an http(s) base URL such as %s", errEndpoint, DefaultEndpoint)
	}
	if (ep.Scheme != "http" && ep.Scheme != "https") || ep.Host == "" || ep.RawQuery != "" || ep.Fragment != "" {
		return nil, fmt.Errorf("%w %q: want an http(s) base URL such as %s", errEndpoint, withoutQuery(ep), DefaultEndpoint)
	}
	ep.Path = strings.TrimSuffix(ep.Path, "/")
	if strings.ContainsFunc(o.Token, func(r rune) bool { return r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return nil, fmt.Errorf("%w: contains spaces or non-ASCII characters", errToken)
	}
	base := o.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = time.Minute
		t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		base = t
	}
	c := &Client{
		endpoint:  ep,
		token:     o.Token,
		Retries:   4,
		RetryWait: time.Second,
		Stall:     time.Minute,
		lockPoll:  250 * time.Millisecond,
		fs:        osFS(),
	}
	c.http = &http.Client{
		Transport: &authTransport{base: base, scheme: ep.Scheme, host: ep.Host, token: o.Token},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if req.URL.Scheme != "https" && via[0].URL.Scheme == "https" {
				return fmt.Errorf("refusing a redirect from https to %s", withoutQuery(req.URL))
			}
			if want, ok := req.Context().Value(wantDigest{}).(Digest); ok && req.Response != nil {
				return checkLinked(req.Response.Header.Get("X-Linked-Etag"), want)
			}
			return nil
		},
	}
	return c, nil
}

// withoutQuery writes u for an error: without its query (a presigned CDN URL's query is
// a credential for the file, as good as the token for that blob while it lasts) and
// without a password.
func withoutQuery(u *url.URL) string {
	v := *u
	if v.RawQuery != "" {
		v.RawQuery = "…"
	}
	v.Fragment, v.RawFragment = "", ""
	return v.Redacted()
}

// wantDigest keys the LFS digest a download expects in its request's context, for the
// redirect check.
type wantDigest struct{}

// checkLinked compares the X-Linked-Etag of the Hub's redirect to an LFS object (its
// SHA-256, quoted) with the digest the listing gave: a difference means the file was
// replaced since, and the CDN would send the new version's bytes. An absent or
// unreadable header checks nothing.
func checkLinked(etag string, want Digest) error {
	etag = strings.Trim(strings.TrimPrefix(etag, "W/"), `"`)
	d, err := ParseDigest(SHA256, etag)
	if err != nil || want.Algo != SHA256 || d.Hex == want.Hex {
		return nil
	}
	return fmt.Errorf("%w (listed as sha256 %s, now %s): run again to fetch the new version", ErrChanged, want.Hex, d.Hex)
}

// FromEnv returns a client configured as huggingface_hub configures itself: HF_ENDPOINT
// (a mirror's base URL) and HF_TOKEN. transport may be nil.
// The token is trimmed of surrounding white space, as huggingface_hub trims it (one read
// from a file may end in a line break). An error names the variable at fault.
func FromEnv(transport http.RoundTripper) (*Client, error) {
	c, err := New(Options{Endpoint: os.Getenv(EnvEndpoint), Token: strings.TrimSpace(os.Getenv(EnvToken)), Transport: transport})
	switch {
	case errors.Is(err, errEndpoint):
		return nil, fmt.Errorf("$%s: %w", EnvEndpoint, err)
	case errors.Is(err, errToken):
		return nil, fmt.Errorf("$%s: %w", EnvToken, err)
	}
	return c, err
}

// Errors of New, which FromEnv tells apart to name the variable at fault.
var (
	errEndpoint = errors.New("hub endpoint")
	errToken    = errors.New("hub token")
)

// Endpoint returns the base URL the client talks to, for people: a password in it is
// masked.
func (c *Client) Endpoint() string { return c.endpoint.Redacted() }

// authTransport adds the token to requests for the Hub's own scheme and host.
type authTransport struct {
	base         http.RoundTripper
	scheme, host string
	token        string
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Del("Authorization")
	if t.token != "" && req.URL.Scheme == t.scheme && strings.EqualFold(req.URL.Host, t.host) {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "specd")
	}
	return t.base.RoundTrip(req)
}

// get sends a GET with ctx and returns the response when its status is 2xx (or one of
// also); any other status is an error that names what.
func (c *Client) get(ctx context.Context, u, what string, hdr http.Header, also ...int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// A presigned CDN URL's query is a credential for the file: keep it out of
			// errors, which reach the terminal and the logs.
			if u, perr := url.Parse(ue.URL); perr == nil {
				ue.URL = withoutQuery(u)
			}
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if resp.StatusCode/100 == 2 || containsInt(also, resp.StatusCode) {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, c.statusError(resp, what)
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// httpError is a status the Hub answered that is not one of the sentinels, or any
// refusal from another host (the CDN a download redirects to); it keeps the code so
// that a download can tell a server error (retried) from a refusal.
type httpError struct {
	code   int
	offHub bool // answered by another host than the endpoint's
	msg    string
	// retryAfter is the wait a 429 or 503 asked for (Retry-After), at most
	// maxRetryAfter; 0: none asked.
	retryAfter time.Duration
}

// maxRetryAfter bounds the wait a server's Retry-After can impose on one retry.
const maxRetryAfter = 5 * time.Minute

// retryAfter is the wait resp's Retry-After asks for — seconds, or an HTTP date —
// within [0, maxRetryAfter]; 0 when it asks none or cannot be read.
func retryAfter(resp *http.Response, now time.Time) time.Duration {
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(min(max(secs, 0), int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// waitFor is the pause before retrying after err: wait, or longer when the server
// asked for longer.
func waitFor(err error, wait time.Duration) time.Duration {
	var he *httpError
	if errors.As(err, &he) {
		return max(wait, he.retryAfter)
	}
	return wait
}

func (e *httpError) Error() string { return e.msg }

// statusError turns a non-2xx answer into an error naming what was asked, the status,
// and the Hub's message (X-Error-Message, or the "error" of its JSON body).
func (c *Client) statusError(resp *http.Response, what string) error {
	msg := resp.Header.Get("X-Error-Message")
	if msg == "" {
		var body struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &body) == nil {
			msg = body.Error
		}
	}
	msg = printable(msg, 300)
	if msg != "" {
		msg = ": " + msg
	}
	if h := resp.Request.URL.Host; !strings.EqualFold(h, c.endpoint.Host) {
		// Not the Hub: a CDN refusing its presigned URL (expired, say) says nothing of
		// the token or of a gated repository's terms.
		return &httpError{code: resp.StatusCode, offHub: true, msg: fmt.Sprintf("%s: HTTP %s from %s%s", what, resp.Status, printable(h, 100), msg)}
	}
	tokenHint := "set " + EnvToken + " to an access token that can read it"
	if c.token != "" {
		tokenHint = EnvToken + " is set but the Hub did not accept it for this; check that the token is valid and can read the repository"
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: %w%s (the repository is private or gated, or does not exist; %s)", what, ErrUnauthorized, msg, tokenHint)
	case http.StatusForbidden:
		return fmt.Errorf("%s: %w%s (a gated repository: accept its terms on its Hub page with the account whose token is in %s)", what, ErrForbidden, msg, EnvToken)
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w%s", what, ErrNotFound, msg)
	}
	he := &httpError{code: resp.StatusCode, msg: fmt.Sprintf("%s: HTTP %s%s", what, resp.Status, msg)}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		he.retryAfter = retryAfter(resp, time.Now())
	}
	return he
}

// printable trims s to n bytes of printable text, so that a hostile server cannot write
// escape sequences to the user's terminal through an error.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// maxListing bounds one page of a tree listing and the number of pages.
const (
	maxListing = 32 << 20
	maxPages   = 1000
)

// List returns the files of a repository (ORG/REPO) on the main branch, directories and
// hidden files left out. A page that fails for a passing reason (5xx, 429, a cut or
// stalled connection) is fetched again, as a download's attempt is. Errors wrap
// ErrUnauthorized, ErrForbidden or ErrNotFound for those answers.
func (c *Client) List(ctx context.Context, repo string) ([]File, error) {
	if _, err := ParseRef(repo); err != nil {
		return nil, err
	}
	u := c.endpoint.JoinPath("api", "models", repo, "tree", revision)
	u.RawQuery = "recursive=true"
	next := u.String()
	var files []File
	for page := 0; next != ""; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("listing %s: more than %d pages", repo, maxPages)
		}
		var fs []File
		var err error
		fs, next, err = c.page(ctx, repo, next)
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
	}
	return files, nil
}

// page fetches and reads one page of a listing, and returns its files and the next
// page's URL. A 5xx or 429 answer, a cut connection or a stall (no byte for c.Stall)
// is retried as a download's attempt is, up to c.Retries times in a row.
func (c *Client) page(ctx context.Context, repo, u string) ([]File, string, error) {
	what := "listing the files of " + repo
	wait := c.RetryWait
	for failures := 0; ; failures++ {
		b, resp, err := c.readPage(ctx, u, what)
		if err == nil {
			fs, err := parseTree(b)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %w", what, err)
			}
			next, err := nextLink(resp.Request.URL, resp.Header.Values("Link"))
			if err != nil {
				return nil, "", fmt.Errorf("%s: %w", what, err)
			}
			return fs, next, nil
		}
		var re retryable
		if ctx.Err() != nil || !errors.As(err, &re) {
			return nil, "", err
		}
		if failures == c.Retries {
			return nil, "", fmt.Errorf("%s failed %d times in a row: %w", what, failures+1, re.err)
		}
		pause := waitFor(re.err, wait)
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(pause):
		}
		wait *= 2
	}
}

// readPage GETs one page and reads its body, giving up when no byte comes for c.Stall;
// its errors are retryable (see classify) or final.
func (c *Client) readPage(ctx context.Context, u, what string) ([]byte, *http.Response, error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	timer := time.AfterFunc(c.Stall, func() { stalled.Store(true); cancel() })
	defer timer.Stop()
	resp, err := c.get(pctx, u, what, nil)
	if err != nil {
		return nil, nil, classify(ctx, err, stalled.Load(), c.Stall)
	}
	defer resp.Body.Close()
	body := &stallReader{r: resp.Body, timer: timer, stall: c.Stall}
	b, err := io.ReadAll(io.LimitReader(body, maxListing+1))
	if err != nil {
		return nil, nil, classify(ctx, fmt.Errorf("%s: %w", what, err), stalled.Load(), c.Stall)
	}
	if len(b) > maxListing {
		return nil, nil, fmt.Errorf("%s: a page over %d bytes", what, maxListing)
	}
	return b, resp, nil
}

// stallReader restarts a stall timer whenever bytes arrive.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	stall time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.stall)
	}
	return n, err
}

// treeEntry is one element of the tree listing's JSON array.
type treeEntry struct {
	Type string `json:"type"` // "file" or "directory"
	Path string `json:"path"`
	Size *int64 `json:"size"`
	OID  string `json:"oid"` // the git blob's SHA-1
	LFS  *struct {
		OID  string `json:"oid"` // the content's SHA-256
		Size *int64 `json:"size"`
	} `json:"lfs"`
}

// parseTree reads one page of a tree listing: a JSON array of entries. Hidden files
// (a segment such as .gitattributes, which every repository has, or .github/) are left
// out: they are never models, and specd stores no file under such a name. Any other
// file entry needs a safe relative path, a size and a digest (the LFS SHA-256 when the
// file is in LFS, else the git blob SHA-1); anything else is an error, never a guess.
func parseTree(b []byte) ([]File, error) {
	var entries []treeEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("bad tree listing: %w", err)
	}
	var files []File
	for _, e := range entries {
		if e.Type != "file" || hidden(e.Path) {
			continue
		}
		if err := checkRepoPath(e.Path); err != nil {
			return nil, fmt.Errorf("bad tree listing: %w", err)
		}
		f := File{Path: e.Path}
		switch {
		case e.LFS != nil:
			if e.LFS.Size == nil || *e.LFS.Size < 0 {
				return nil, fmt.Errorf("bad tree listing: %s: no LFS size", e.Path)
			}
			d, err := ParseDigest(SHA256, e.LFS.OID)
			if err != nil {
				return nil, fmt.Errorf("bad tree listing: %s: %w", e.Path, err)
			}
			f.Size, f.Digest = *e.LFS.Size, d
		default:
			if e.Size == nil || *e.Size < 0 {
				return nil, fmt.Errorf("bad tree listing: %s: no size", e.Path)
			}
			d, err := ParseDigest(GitSHA1, e.OID)
			if err != nil {
				return nil, fmt.Errorf("bad tree listing: %s: %w", e.Path, err)
			}
			f.Size, f.Digest = *e.Size, d
		}
		files = append(files, f)
	}
	return files, nil
}

// hidden reports whether a path has a segment that starts with a dot but is not "." or
// "..", which checkRepoPath rejects as traversal.
func hidden(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if strings.HasPrefix(seg, ".") && seg != "." && seg != ".." {
			return true
		}
	}
	return false
}

// nextLink returns the rel="next" target of Link headers, resolved against the page's
// URL, or "" when there is none.
func nextLink(page *url.URL, links []string) (string, error) {
	for _, h := range links {
		for _, l := range strings.Split(h, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(l), ";")
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			isNext := false
			for _, p := range strings.Split(params, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && strings.Trim(v, `"`) == "next" {
					isNext = true
				}
			}
			if !isNext {
				continue
			}
			u, err := page.Parse(target[1 : len(target)-1])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return "", fmt.Errorf("bad next-page link %q", printable(target, 200))
			}
			return u.String(), nil
		}
	}
	return "", nil
}

// fileURL is where a file of a repository downloads from.
func (c *Client) fileURL(repo, p string) string {
	segs := append([]string{repo, "resolve", revision}, strings.Split(p, "/")...)
	return c.endpoint.JoinPath(segs...).String()
}
