// Package hubtest is test support: an in-process fake of the part of the Hugging Face
// Hub's HTTP API that package hub uses, on loopback, with a second server standing for
// the CDN that LFS downloads redirect to. It is imported only by tests; it exists
// because tests here reach no network.
//
// The Hub side serves:
//
//	GET /api/models/ORG/REPO/tree/REV[/PATH]   ?recursive=true; JSON array of entries
//	                                           {type, oid, size, path[, lfs{oid,size,pointerSize}]},
//	                                           Options.PageSize a page, the next page in a
//	                                           Link: <...&cursor=N>; rel="next" header
//	GET|HEAD /ORG/REPO/resolve/REV/PATH        a file kept in git: its bytes (Range honoured);
//	                                           an LFS file: 302 to the CDN with X-Linked-Size,
//	                                           X-Linked-Etag and X-Repo-Commit
//
// and the CDN side GET /blobs/SHA256 (Range honoured, as http.ServeContent does it).
//
// What it keeps from the real Hub: every repository has a .gitattributes at its root,
// kept in git; only the "main" revision exists (another is 404
// RevisionNotFound); errors carry X-Error-Code and X-Error-Message and a JSON
// {"error": ...} body; a wrong token is 401 even for a public repository; a private
// repository without the right token is 401, and so is an unknown repository for a
// caller without a token (the Hub does not tell them apart), while a caller with a
// valid token gets 404 RepoNotFound; a missing file is 404 EntryNotFound. Like a
// presigned CDN URL, the CDN refuses (400) a request that carries an Authorization
// header: a client that forwards the Hub token to it fails.
//
// Faults a test can inject: CutAfter (the connection drops mid-body), StallAfter (it
// goes quiet mid-body), Corrupt (bytes that do not match the listed digest),
// IgnoreRange (a server that answers a Range request with the whole file), FailListing
// (a tree listing answered 503 or 429, or going quiet mid-page).
// Repositories are public, private or gated (see Access). Not modelled: other
// revisions, datasets and spaces, the model-info endpoint, Xet storage, rate limits.
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Commit is the commit id the fake reports for every repository.
const Commit = "0123456789abcdef0123456789abcdef01234567"

// Options configure a Server.
type Options struct {
	// Token is the one access token the fake accepts; "" accepts none.
	Token string
	// PageSize is the number of tree entries per page; 0 is 50.
	PageSize int
}

// Request is a request either side received, as recorded.
type Request struct {
	Server        string // "hub" or "cdn"
	Method, Path  string
	Range         string
	Authorization string
}

// Server is a fake Hub and its CDN. Its methods are safe for concurrent use.
type Server struct {
	// URL is the Hub's base URL (an HF_ENDPOINT); CDNURL the CDN's.
	URL, CDNURL string

	opts     Options
	hub, cdn *httptest.Server

	mu          sync.Mutex
	repos       map[string]*repo
	blobs       map[string]*blobFile // by sha256, for the CDN
	cuts        map[string][]fault   // by repo/path: pending faults, one per download
	listFaults  []ListingFault       // pending faults, one per tree listing request
	ignoreRange bool
	log         []Request
}

// fault is what one download of a file suffers after n body bytes.
type fault struct {
	n     int64
	stall bool // hold the connection open without sending more; else drop it
}

type repo struct {
	access  Access
	granted bool // a gated repository's terms were accepted
	files   map[string]*blobFile
}

type blobFile struct {
	data    []byte
	served  []byte // what is sent: data, or a corrupted copy
	lfs     bool
	sha256  string
	gitSHA1 string
}

// New starts a fake Hub and CDN on loopback and closes them when the test ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.PageSize <= 0 {
		opts.PageSize = 50
	}
	s := &Server{opts: opts, repos: map[string]*repo{}, blobs: map[string]*blobFile{}, cuts: map[string][]fault{}}
	s.hub = httptest.NewServer(http.HandlerFunc(s.serveHub))
	s.cdn = httptest.NewServer(http.HandlerFunc(s.serveCDN))
	s.URL, s.CDNURL = s.hub.URL, s.cdn.URL
	tb.Cleanup(func() {
		s.hub.CloseClientConnections()
		s.cdn.CloseClientConnections()
		s.hub.Close()
		s.cdn.Close()
	})
	return s
}

// Access is who may read a repository.
type Access int

const (
	Public  Access = iota
	Private        // only with Options.Token
	// Gated: anyone may list it; its files download only with Options.Token after the
	// account accepted its terms (Grant): 401 GatedRepo without a token, 403 GatedRepo
	// with one that was not granted.
	Gated
)

// gitattributes is the file the Hub commits to every new repository: it sends the
// usual binary formats to LFS. Every real listing has it at the root.
var gitattributes = []byte("*.bin filter=lfs diff=lfs merge=lfs -text\n" +
	"*.gguf filter=lfs diff=lfs merge=lfs -text\n" +
	"*.safetensors filter=lfs diff=lfs merge=lfs -text\n")

// newRepo returns an empty repository as the Hub creates one: with a .gitattributes.
func newRepo(access Access) *repo {
	return &repo{access: access, files: map[string]*blobFile{".gitattributes": newBlob(gitattributes, false)}}
}

// AddRepo creates a repository (ORG/REPO), holding only .gitattributes.
func (s *Server) AddRepo(name string, access Access) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[name] = newRepo(access)
}

// Grant accepts a gated repository's terms for the account of Options.Token.
func (s *Server) Grant(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[name].granted = true
}

// AddFile puts a file in a repository (created public if new), stored in LFS or in git.
// It returns the content's SHA-256.
func (s *Server) AddFile(name, p string, data []byte, lfs bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[name]
	if r == nil {
		r = newRepo(Public)
		s.repos[name] = r
	}
	b := newBlob(data, lfs)
	r.files[p] = b
	if lfs {
		s.blobs[b.sha256] = b
	}
	return b.sha256
}

func newBlob(data []byte, lfs bool) *blobFile {
	sum := sha256.Sum256(data)
	g := sha1.New()
	fmt.Fprintf(g, "blob %d\x00", len(data))
	g.Write(data)
	return &blobFile{data: data, served: data, lfs: lfs, sha256: hex.EncodeToString(sum[:]), gitSHA1: hex.EncodeToString(g.Sum(nil))}
}

// CutAfter makes the next downloads of a file drop the connection after n body bytes,
// one download per count given.
func (s *Server) CutAfter(name, p string, n ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range n {
		s.cuts[name+"/"+p] = append(s.cuts[name+"/"+p], fault{n: k})
	}
}

// StallAfter makes the next download of a file send n body bytes and then nothing,
// holding the connection open until the client gives up on it.
func (s *Server) StallAfter(name, p string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cuts[name+"/"+p] = append(s.cuts[name+"/"+p], fault{n: n, stall: true})
}

// Corrupt makes the file's downloads send bytes of the right length that do not match
// its listed digest.
func (s *Server) Corrupt(name, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.repos[name].files[p]
	bad := bytes.Clone(b.data)
	bad[len(bad)/2] ^= 0xff
	b.served = bad
}

// ListingFault is what one tree listing request suffers.
type ListingFault int

const (
	// Unavailable: 503 Service Unavailable, as the Hub answers when overloaded.
	Unavailable ListingFault = iota + 1
	// StallListing: the response starts, then no more bytes come until the client
	// goes away.
	StallListing
	// RateLimited: 429 Too Many Requests with Retry-After: 1, as the Hub rate-limits.
	RateLimited
)

// FailListing makes the next tree listing requests suffer the faults, one request each,
// in order.
func (s *Server) FailListing(f ...ListingFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listFaults = append(s.listFaults, f...)
}

// IgnoreRange makes both servers answer Range requests with the whole file (200).
func (s *Server) IgnoreRange(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ignoreRange = on
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// CDNRequests returns how many requests the CDN side received: one per download
// attempt of an LFS file.
func (s *Server) CDNRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.log {
		if r.Server == "cdn" {
			n++
		}
	}
	return n
}

func (s *Server) record(server string, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, Request{Server: server, Method: r.Method, Path: r.URL.RequestURI(), Range: r.Header.Get("Range"), Authorization: r.Header.Get("Authorization")})
}

func hubError(w http.ResponseWriter, status int, code, msg string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.Header().Set("X-Error-Message", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// authorize applies the Hub's rules for reading a repository (download: for a file's
// bytes rather than the listing); it writes the error and returns nil when the caller
// may not read it.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, name string, download bool) *repo {
	auth := r.Header.Get("Authorization")
	tokenOK := false
	if auth != "" {
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || s.opts.Token == "" || tok != s.opts.Token {
			hubError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header")
			return nil
		}
		tokenOK = true
	}
	s.mu.Lock()
	rp := s.repos[name]
	s.mu.Unlock()
	switch {
	case rp == nil && !tokenOK, rp != nil && rp.access == Private && !tokenOK:
		hubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository not found")
		return nil
	case rp == nil:
		hubError(w, http.StatusNotFound, "RepoNotFound", "Repository not found")
		return nil
	case rp.access == Gated && download && !tokenOK:
		hubError(w, http.StatusUnauthorized, "GatedRepo", "Access to model "+name+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
		return nil
	case rp.access == Gated && download && !rp.granted:
		hubError(w, http.StatusForbidden, "GatedRepo", "Access to model "+name+" is restricted and you are not in the authorized list.")
		return nil
	}
	return rp
}

func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	s.record("hub", r)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hubError(w, http.StatusMethodNotAllowed, "", "method not allowed")
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	if rest, ok := strings.CutPrefix(p, "api/models/"); ok {
		s.serveTree(w, r, rest)
		return
	}
	// ORG/REPO/resolve/REV/PATH
	parts := strings.SplitN(p, "/", 5)
	if len(parts) < 5 || parts[2] != "resolve" {
		hubError(w, http.StatusNotFound, "", "Not Found")
		return
	}
	name := parts[0] + "/" + parts[1]
	rp := s.authorize(w, r, name, true)
	if rp == nil {
		return
	}
	if parts[3] != "main" {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+parts[3])
		return
	}
	s.mu.Lock()
	b := rp.files[parts[4]]
	s.mu.Unlock()
	if b == nil {
		hubError(w, http.StatusNotFound, "EntryNotFound", parts[4]+" does not exist on \"main\"")
		return
	}
	w.Header().Set("X-Repo-Commit", Commit)
	if b.lfs {
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(b.data)))
		w.Header().Set("X-Linked-Etag", `"`+b.sha256+`"`)
		w.Header().Set("Location", s.CDNURL+"/blobs/"+b.sha256+"?key="+name+"/"+parts[4]+"&X-Amz-Signature=fake")
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+b.gitSHA1+`"`)
	s.send(w, r, name+"/"+parts[4], b)
}

func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	s.record("cdn", r)
	if r.Header.Get("Authorization") != "" {
		// As S3 answers a presigned URL that also carries an Authorization header.
		http.Error(w, "InvalidArgument: Only one auth mechanism allowed", http.StatusBadRequest)
		return
	}
	oid, ok := strings.CutPrefix(r.URL.Path, "/blobs/")
	s.mu.Lock()
	b := s.blobs[oid]
	s.mu.Unlock()
	if !ok || b == nil {
		http.Error(w, "NoSuchKey", http.StatusNotFound)
		return
	}
	s.send(w, r, r.URL.Query().Get("key"), b)
}

// send writes a file's bytes with Range support, applying the injected faults.
func (s *Server) send(w http.ResponseWriter, r *http.Request, key string, b *blobFile) {
	s.mu.Lock()
	served := b.served
	var cut *fault
	if c := s.cuts[key]; len(c) > 0 && r.Method == http.MethodGet {
		cut, s.cuts[key] = &c[0], c[1:]
	}
	if s.ignoreRange {
		r.Header.Del("Range")
	}
	s.mu.Unlock()
	if cut != nil {
		w = &cutWriter{ResponseWriter: w, left: cut.n, stall: cut.stall, done: r.Context().Done()}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(served))
}

// cutWriter passes left body bytes, then aborts the response: the client sees the
// connection close before Content-Length bytes arrived. With stall it first waits for
// the client to go away.
type cutWriter struct {
	http.ResponseWriter
	left  int64
	stall bool
	done  <-chan struct{}
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		c.ResponseWriter.Write(p[:c.left])
		c.left = 0
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		if c.stall {
			<-c.done
		}
		panic(http.ErrAbortHandler)
	}
	c.left -= int64(len(p))
	return c.ResponseWriter.Write(p)
}

type treeEntry struct {
	Type string   `json:"type"`
	OID  string   `json:"oid"`
	Size int      `json:"size"`
	Path string   `json:"path"`
	LFS  *lfsInfo `json:"lfs,omitempty"`
}

type lfsInfo struct {
	OID         string `json:"oid"`
	Size        int    `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

// serveTree answers ORG/REPO/tree/REV[/PATH].
func (s *Server) serveTree(w http.ResponseWriter, r *http.Request, rest string) {
	s.mu.Lock()
	var fault ListingFault
	if len(s.listFaults) > 0 {
		fault, s.listFaults = s.listFaults[0], s.listFaults[1:]
	}
	s.mu.Unlock()
	switch fault {
	case Unavailable:
		hubError(w, http.StatusServiceUnavailable, "", "Service Unavailable")
		return
	case StallListing:
		w = &cutWriter{ResponseWriter: w, left: 1, stall: true, done: r.Context().Done()}
	case RateLimited:
		w.Header().Set("Retry-After", "1")
		hubError(w, http.StatusTooManyRequests, "", "Too Many Requests")
		return
	}
	parts := strings.SplitN(rest, "/", 5)
	if len(parts) < 4 || parts[2] != "tree" {
		hubError(w, http.StatusNotFound, "", "Not Found")
		return
	}
	name := parts[0] + "/" + parts[1]
	rp := s.authorize(w, r, name, false)
	if rp == nil {
		return
	}
	if parts[3] != "main" {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+parts[3])
		return
	}
	dir := ""
	if len(parts) == 5 {
		dir = strings.Trim(parts[4], "/")
	}
	recursive := r.URL.Query().Get("recursive") == "true" || r.URL.Query().Get("recursive") == "1"
	entries := s.entries(rp, dir, recursive)
	if dir != "" && len(entries) == 0 {
		hubError(w, http.StatusNotFound, "EntryNotFound", dir+" does not exist on \"main\"")
		return
	}
	from := 0
	if c := r.URL.Query().Get("cursor"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 || n > len(entries) {
			hubError(w, http.StatusBadRequest, "", "invalid cursor")
			return
		}
		from = n
	}
	to := min(from+s.opts.PageSize, len(entries))
	if to < len(entries) {
		q := r.URL.Query()
		q.Set("cursor", strconv.Itoa(to))
		w.Header().Set("Link", "<"+s.URL+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(entries[from:to])
}

// entries lists a repository directory as the tree endpoint does, sorted by path.
func (s *Server) entries(rp *repo, dir string, recursive bool) []treeEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []treeEntry
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	for p, b := range rp.files {
		rel, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		// Every directory between dir and the file.
		segs := strings.Split(rel, "/")
		for i := 1; i < len(segs); i++ {
			d := prefix + strings.Join(segs[:i], "/")
			if !seen[d] && (recursive || i == 1) {
				seen[d] = true
				out = append(out, treeEntry{Type: "directory", OID: strings.Repeat("d", 40), Path: d})
			}
		}
		if !recursive && len(segs) > 1 {
			continue
		}
		e := treeEntry{Type: "file", OID: b.gitSHA1, Size: len(b.data), Path: p}
		if b.lfs {
			e.LFS = &lfsInfo{OID: b.sha256, Size: len(b.data), PointerSize: 134}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b treeEntry) int { return strings.Compare(a.Path, b.Path) })
	return out
}
