package hub

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrNotWritable is returned by Pull and Download when the model directory (or the
// file's folder in it) cannot be written.
var ErrNotWritable = errors.New("directory not writable")

// errBusy is what fsys.open returns while another download holds the partial file.
var errBusy = errors.New("another download of this file is running")

// Progress receives a download's progress; the methods are called from the goroutine
// running Pull or Download, in order: Wait (at most once, when another download of the
// file is running), then, when there are bytes to fetch, Start, any Add and Retry, and
// End. Start comes again, with done 0, when a server's answer makes the download start
// over (it ignored a Range request, say).
type Progress interface {
	// Wait reports that another download of name (in this or another process) holds
	// its partial file: this one waits for it to finish or stop.
	Wait(name string)
	// Start begins the transfer of name (size bytes), done of which a partial file from
	// an earlier attempt already holds.
	Start(name string, size, done int64)
	// Add reports n more bytes written.
	Add(n int64)
	// Retry reports a failed attempt that resumes after wait.
	Retry(err error, wait time.Duration)
	// End closes the display; err is the transfer's outcome (nil: complete).
	End(err error)
}

type noProgress struct{}

func (noProgress) Wait(string)                {}
func (noProgress) Start(string, int64, int64) {}
func (noProgress) Add(int64)                  {}
func (noProgress) Retry(error, time.Duration) {}
func (noProgress) End(error)                  {}

// LocalPath is where a repository's file lives below the model directory:
// DIR/hf/ORG/REPO/PATH.
func LocalPath(dir, repo, p string) string {
	return filepath.Join(dir, "hf", filepath.FromSlash(repo), filepath.FromSlash(p))
}

// Local finds a file pulled earlier for ref in dir without touching the network: the
// file Select would choose among the GGUF files below DIR/hf/ORG/REPO, where a
// reference without a tag means DefaultTag. It reports false when there is none, or
// more than one.
func Local(dir string, ref Ref) (string, bool) {
	root := LocalPath(dir, ref.Repo, "")
	var files []File
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(strings.ToLower(p), ".gguf") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err == nil {
			files = append(files, File{Path: filepath.ToSlash(rel)})
		}
		return nil
	})
	if ref.Tag == "" && ref.File == "" {
		ref.Tag = DefaultTag
	}
	f, err := Select(files, ref)
	if err != nil {
		return "", false
	}
	return LocalPath(dir, ref.Repo, f.Path), true
}

// Pull lists ref's repository, picks the file (see Select) and makes sure a verified
// copy is at LocalPath(dir, ...), downloading it unless a file of that name, size and
// digest is there already. It returns the path. p may be nil.
//
// Errors wrap ErrBadRef, ErrNoMatch, ErrAmbiguous, ErrSplit, ErrUnauthorized,
// ErrForbidden, ErrNotFound, ErrChecksum, ErrChanged, ErrNoSpace or ErrNotWritable
// where those are the cause, and ctx's error when it ends first; see Download for what
// is left on disk and for two pulls of one file at once.
func (c *Client) Pull(ctx context.Context, dir string, ref Ref, p Progress) (string, error) {
	files, err := c.List(ctx, ref.Repo)
	if err != nil {
		return "", err
	}
	f, err := Select(files, ref)
	if err != nil {
		return "", err
	}
	dest := LocalPath(dir, ref.Repo, f.Path)
	ok, err := haveFile(ctx, dest, f)
	if err != nil {
		return "", err
	}
	if ok {
		return dest, nil
	}
	if err := c.Download(ctx, ref.Repo, f, dest, p); err != nil {
		return "", err
	}
	return dest, nil
}

// haveFile reports whether dest is a regular file of f's size and digest.
func haveFile(ctx context.Context, dest string, f File) (bool, error) {
	st, err := os.Stat(dest)
	if err != nil || !st.Mode().IsRegular() || st.Size() != f.Size {
		return false, nil
	}
	return hashFile(ctx, dest, f)
}

// hashFile reports whether the file at path has f's digest.
func hashFile(ctx context.Context, path string, f File) (bool, error) {
	r, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer r.Close()
	h := f.Digest.newHash(f.Size)
	if _, err := copyCtx(ctx, h, r); err != nil {
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == f.Digest.Hex, nil
}

// copyCtx copies until EOF, checking ctx between blocks.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := r.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// partialName is the file a download of dest with digest d grows in: beside dest, so
// that the final rename is atomic, and ending in ".partial" so that nothing loads it as
// a model. The digest in its name keeps a partial of an older version of the file from
// being resumed.
func partialName(dest string, d Digest) string {
	return dest + "." + d.Hex[:16] + ".partial"
}

// Download fetches f of repo to dest. The bytes grow in a partial file beside dest
// (see partialName), resumed with a Range request after a cut connection, a stall or
// an earlier run; the SHA-256 (or git SHA-1) is checked over the whole file; only then
// is the partial renamed to dest, atomically. So dest is either absent, an older
// complete file, or the verified new one.
//
// What is left on failure: on a checksum mismatch the partial is removed; when ctx
// ends, the connection keeps failing, or the disk fills, the partial is kept (the error
// names it) and the next Download resumes it. Partials of other versions of dest are
// removed. p may be nil.
//
// Two downloads of one file at once (two processes, or two services started with the
// same -m hf:) do not share the partial: a lock on it makes the second wait (telling p)
// until the first ends, then find the verified file in place, or resume what the first
// left. A wait ends with ctx.
func (c *Client) Download(ctx context.Context, repo string, f File, dest string, p Progress) (err error) {
	if p == nil {
		p = noProgress{}
	}
	dir := filepath.Dir(dest)
	if err := c.fs.mkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: cannot create %s: %w", ErrNotWritable, dir, err)
	}
	part := partialName(dest, f.Digest)
	c.removeStalePartials(dest, part)
	pf, err := c.lock(ctx, f, part, p)
	if err != nil {
		return err
	}
	defer func() {
		if pf != nil {
			pf.Close()
		}
	}()
	// Another download (one waited for, or one that ended between the caller's look
	// and this lock) may have put the file in place.
	ok, err := haveFile(ctx, dest, f)
	if err != nil {
		return err
	}
	if ok {
		release(pf, func() error { return os.Remove(part) })
		pf = nil
		return nil
	}
	t := &transfer{repo: repo, f: f, pf: pf, part: part}
	if err := t.resume(ctx); err != nil {
		return fmt.Errorf("resuming %s: %w", part, err)
	}
	if free, ok := c.fs.free(dir); ok && free < f.Size-t.have {
		if t.have == 0 { // leave no empty partial behind
			release(pf, func() error { return os.Remove(part) })
			pf = nil
		}
		return fmt.Errorf("%s needs %s more, %s has %s free: %w", f.Path, bytesText(f.Size-t.have), dir, bytesText(free), ErrNoSpace)
	}
	p.Start(f.Path, f.Size, t.have)
	defer func() { p.End(err) }()

	url := c.fileURL(repo, f.Path)
	stopped := func(cause error) error {
		return fmt.Errorf("download of %s stopped at %s of %s (kept in %s; run again to resume): %w",
			f.Path, bytesText(t.have), bytesText(f.Size), part, cause)
	}
	// An attempt counts as progress only when it takes the partial further than any
	// attempt before: one that starts over (a server ignoring Range) and is cut again
	// at the same place brings bytes but gets nowhere, and must not retry forever.
	failures, wait, best := 0, c.RetryWait, t.have
	for t.have < f.Size {
		ferr := c.fetch(ctx, url, t, p)
		if ferr == nil {
			continue
		}
		if ctx.Err() != nil {
			return stopped(ctx.Err())
		}
		var re retryable
		if !errors.As(ferr, &re) {
			return ferr
		}
		if t.have > best {
			failures, wait, best = 0, c.RetryWait, t.have
		}
		failures++
		if failures > c.Retries {
			return fmt.Errorf("download of %s failed %d times in a row at %s of %s (kept in %s; run again to resume): %w",
				f.Path, failures, bytesText(t.have), bytesText(f.Size), part, re.err)
		}
		pause := waitFor(re.err, wait)
		p.Retry(re.err, pause)
		select {
		case <-ctx.Done():
			return stopped(ctx.Err())
		case <-time.After(pause):
		}
		wait *= 2
	}
	if err := pf.Sync(); err != nil {
		return diskError(part, t.have, f.Size, err)
	}
	if got := hex.EncodeToString(t.h.Sum(nil)); got != f.Digest.Hex {
		release(pf, func() error { return os.Remove(part) })
		pf = nil
		return fmt.Errorf("%s: %w: the %s downloaded have %s %s, the Hub lists %s (the download was deleted; run again, and if %s is set, check the mirror)",
			f.Path, ErrChecksum, bytesText(f.Size), f.Digest.Algo, got, f.Digest.Hex, EnvEndpoint)
	}
	moveErr, closeErr := release(pf, func() error { return c.fs.rename(part, dest) })
	pf = nil
	if moveErr != nil {
		return fmt.Errorf("%w: moving %s into place: %w", ErrNotWritable, part, moveErr)
	}
	if closeErr != nil {
		return diskError(part, t.have, f.Size, closeErr)
	}
	syncDir(dir)
	return nil
}

// lock opens the partial file locked against other downloads of it, waiting (polling
// every lockPoll, telling p once) while one holds it. The lock it gets is on the file
// the name still has: a holder renames or removes the partial before it lets go (see
// release), and a waiter that locked the file just as it went opens the name again.
func (c *Client) lock(ctx context.Context, f File, part string, p Progress) (file, error) {
	waited := false
	for {
		pf, err := c.fs.open(part)
		switch {
		case err == nil:
			if current(pf, part) {
				return pf, nil
			}
			pf.Close() // locked just as the holder moved it away: try the name again
		case !errors.Is(err, errBusy):
			return nil, fmt.Errorf("%w: cannot write %s: %w", ErrNotWritable, part, err)
		case !waited:
			p.Wait(f.Path)
			waited = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for another download of %s (it holds %s): %w", f.Path, part, ctx.Err())
		case <-time.After(c.lockPoll):
		}
	}
}

// current reports whether the open file pf is still the one named part.
func current(pf file, part string) bool {
	a, err := pf.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(part)
	return err == nil && os.SameFile(a, b)
}

// transfer is one file's download in progress: the partial file, the hash of what it
// holds, and its length.
type transfer struct {
	repo string
	f    File
	pf   file
	part string
	h    hash.Hash
	have int64
}

// resume hashes what the partial file already holds and leaves its offset at the end;
// a partial longer than the file is emptied.
func (t *transfer) resume(ctx context.Context) error {
	st, err := t.pf.Stat()
	if err != nil {
		return err
	}
	if st.Size() > t.f.Size {
		return t.restart()
	}
	if _, err := t.pf.Seek(0, io.SeekStart); err != nil {
		return err
	}
	t.h = t.f.Digest.newHash(t.f.Size)
	t.have, err = copyCtx(ctx, t.h, io.LimitReader(t.pf, st.Size()))
	return err
}

// restart empties the partial and resets the hash.
func (t *transfer) restart() error {
	t.h, t.have = t.f.Digest.newHash(t.f.Size), 0
	if err := t.pf.Truncate(0); err != nil {
		return diskError(t.part, 0, t.f.Size, err)
	}
	if _, err := t.pf.Seek(0, io.SeekStart); err != nil {
		return diskError(t.part, 0, t.f.Size, err)
	}
	return nil
}

// retryable marks a failed attempt that a new attempt (with a Range) may get past: a
// cut connection, a stall, a 5xx or 429.
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

// fetch runs one GET of the rest of the file and writes what arrives to the partial.
// Its error is a retryable, or final.
func (c *Client) fetch(ctx context.Context, url string, t *transfer, p Progress) error {
	actx, cancel := context.WithCancel(context.WithValue(ctx, wantDigest{}, t.f.Digest))
	defer cancel()
	var stalled atomic.Bool
	timer := time.AfterFunc(c.Stall, func() { stalled.Store(true); cancel() })
	defer timer.Stop()

	f := t.f
	what := "downloading " + f.Path + " of " + t.repo
	restart := func() error { // and the display with it
		if err := t.restart(); err != nil {
			return err
		}
		p.Start(f.Path, f.Size, 0)
		return nil
	}
	var hdr http.Header
	if t.have > 0 {
		hdr = http.Header{"Range": {"bytes=" + strconv.FormatInt(t.have, 10) + "-"}}
	}
	resp, err := c.get(actx, url, what, hdr, http.StatusRequestedRangeNotSatisfiable)
	if err != nil {
		return classify(ctx, err, stalled.Load(), c.Stall)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusRequestedRangeNotSatisfiable:
		// The server has no bytes past ours: the partial is longer than its file, or the
		// listing and the download disagree. Start over.
		if err := restart(); err != nil {
			return err
		}
		return retryable{fmt.Errorf("%s: the server refused to resume (416); starting over", what)}
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		start, total, err := parseContentRange(cr)
		if err != nil || start != t.have || (total >= 0 && total != f.Size) {
			asked := t.have
			if err := restart(); err != nil {
				return err
			}
			return retryable{fmt.Errorf("%s: asked for bytes from %d, got Content-Range %q; starting over", what, asked, printable(cr, 80))}
		}
	default: // 200: the whole file, whatever was asked
		if resp.ContentLength >= 0 && resp.ContentLength != f.Size {
			return fmt.Errorf("%s: the server sends %d bytes, the Hub lists %d", what, resp.ContentLength, f.Size)
		}
		if t.have > 0 {
			if err := restart(); err != nil {
				return err
			}
		}
	}

	buf := make([]byte, 1<<20)
	body := io.LimitReader(resp.Body, f.Size-t.have)
	for t.have < f.Size {
		if err := ctx.Err(); err != nil { // bytes may already sit in buffers
			return err
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			timer.Reset(c.Stall)
			if w, werr := t.pf.Write(buf[:n]); werr != nil {
				t.h.Write(buf[:w]) // what reached the file stays consistent with the hash
				t.have += int64(w)
				return diskError(t.part, t.have, f.Size, werr)
			}
			t.h.Write(buf[:n])
			t.have += int64(n)
			p.Add(int64(n))
		}
		if rerr == io.EOF && t.have < f.Size {
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil && rerr != io.EOF {
			return classify(ctx, fmt.Errorf("%s: %w", what, rerr), stalled.Load(), c.Stall)
		}
	}
	// The body must end where the listing says the file does.
	var one [1]byte
	if n, _ := io.ReadFull(resp.Body, one[:]); n > 0 {
		return fmt.Errorf("%s: the server sent more than the %d bytes the Hub lists", what, f.Size)
	}
	return nil
}

// classify marks an attempt's error retryable unless ctx ended or the Hub refused.
func classify(ctx context.Context, err error, stalled bool, stall time.Duration) error {
	if ctx.Err() != nil {
		return err
	}
	if stalled {
		return retryable{fmt.Errorf("no data for %v: %w", stall, err)}
	}
	var he *httpError
	if errors.As(err, &he) {
		// A CDN's refusal is retried too: the next attempt goes through the Hub, which
		// signs a fresh URL.
		if he.code >= 500 || he.code == http.StatusTooManyRequests || he.code == http.StatusRequestTimeout || he.offHub {
			return retryable{err}
		}
		return err
	}
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrChanged) {
		return err
	}
	return retryable{err}
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", returned as -1).
func parseContentRange(s string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
			return 0, 0, fmt.Errorf("bad Content-Range %q", s)
		}
	}
	return start, total, nil
}

// diskError explains a failed write to the partial file.
func diskError(part string, have, size int64, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("writing %s: %w (%w) at %s of %s; the partial download is kept: free %s and run again to resume, or delete it",
			part, ErrNoSpace, err, bytesText(have), bytesText(size), bytesText(size-have))
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("writing %s: %w: %w", part, ErrNotWritable, err)
	}
	return fmt.Errorf("writing %s: %w", part, err)
}

// removeStalePartials deletes partial files of other versions of dest, except those a
// running download holds (it listed the file before it changed on the Hub).
func (c *Client) removeStalePartials(dest, keep string) {
	ents, err := os.ReadDir(filepath.Dir(dest))
	if err != nil {
		return
	}
	prefix := filepath.Base(dest) + "."
	for _, e := range ents {
		n := e.Name()
		mid, ok := strings.CutPrefix(n, prefix)
		if !ok || !strings.HasSuffix(mid, ".partial") || len(mid) != 16+len(".partial") {
			continue
		}
		if _, err := hex.DecodeString(mid[:16]); err != nil {
			continue
		}
		p := filepath.Join(filepath.Dir(dest), n)
		if p == keep {
			continue
		}
		if pf, err := c.fs.open(p); err == nil {
			release(pf, func() error { return os.Remove(p) })
		}
	}
}

// syncDir makes a rename in dir durable; failure is not fatal (some file systems cannot).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// bytesText writes a byte count for people: "1.5 GiB".
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}
