package consultest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Blocking query limits, as Consul documents them.
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

// Limits on service metadata, as the agent enforces them.
const (
	metaMaxPairs       = 64
	metaKeyMaxLength   = 128
	metaValueMaxLength = 512
	metaReservedPrefix = "consul-"
)

var metaKeyFormat = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`).MatchString

func (s *Server) handler(r *run) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/agent/service/register", s.register)
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id...}", s.deregister)
	mux.HandleFunc("GET /v1/health/service/{name...}", func(w http.ResponseWriter, req *http.Request) {
		s.health(w, req, r)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !s.admit(r) {
			panic(http.ErrAbortHandler) // the agent is going away: no response at all
		}
		defer r.inflight.Done()
		if !s.authorized(w, req) {
			return
		}
		mux.ServeHTTP(w, req)
	})
}

// authorized enforces Options.Token, reading the token where Consul does.
func (s *Server) authorized(w http.ResponseWriter, req *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	tok := req.Header.Get("X-Consul-Token")
	if tok == "" {
		tok, _ = strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	}
	if tok == "" {
		tok = req.URL.Query().Get("token")
	}
	switch tok {
	case s.opts.Token:
		return true
	case "":
		fail(w, http.StatusForbidden, "Permission denied")
	default:
		fail(w, http.StatusForbidden, "ACL not found")
	}
	return false
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, format, args...)
}

// duration decodes a Go duration string ("10s") or a number of nanoseconds, as the agent
// accepts both.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		*d = duration(v)
		return err
	}
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: %s is neither a string nor a number", b)
	}
	*d = duration(n)
	return nil
}

// serviceDef is the registration body, in the field names the agent documents.
type serviceDef struct {
	Kind    string
	ID      string
	Name    string
	Tags    []string
	Address string
	Port    int
	Meta    map[string]string
	Check   *checkDef
	Checks  []*checkDef
}

type checkDef struct {
	CheckID, Name, Status, Notes   string
	Interval, Timeout, TTL         duration
	DeregisterCriticalServiceAfter duration
	GRPC                           string
	GRPCUseTLS                     bool
	TLSServerName                  string
	TLSSkipVerify                  bool
	HTTP, TCP, UDP, H2PING         string
	ScriptArgs                     []string
	AliasNode, AliasService        string
}

func (c *checkDef) empty() bool { return reflect.ValueOf(*c).IsZero() }

func (c *checkDef) typ() string {
	switch {
	case c.GRPC != "":
		return "grpc"
	case c.HTTP != "":
		return "http"
	case c.TCP != "":
		return "tcp"
	case c.UDP != "":
		return "udp"
	case c.H2PING != "":
		return "h2ping"
	case len(c.ScriptArgs) > 0:
		return "script"
	case c.AliasNode != "" || c.AliasService != "":
		return "alias"
	case c.TTL > 0:
		return "ttl"
	}
	return ""
}

// validate mirrors the agent's CheckType.Validate.
func (c *checkDef) validate() error {
	interval := c.GRPC != "" || c.HTTP != "" || c.TCP != "" || c.UDP != "" || c.H2PING != "" || len(c.ScriptArgs) > 0
	alias := c.AliasNode != "" || c.AliasService != ""
	switch {
	case c.Interval > 0 && c.TTL > 0:
		return fmt.Errorf("Interval and TTL cannot both be specified")
	case interval && c.Interval <= 0:
		return fmt.Errorf("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks")
	case interval && alias:
		return fmt.Errorf("Interval cannot be set for Alias checks")
	case alias && c.TTL > 0:
		return fmt.Errorf("TTL must be not be set for Alias checks")
	case !interval && !alias && c.TTL <= 0:
		return fmt.Errorf("TTL must be > 0 for TTL checks")
	}
	return nil
}

func validateMeta(meta map[string]string) error {
	if len(meta) > metaMaxPairs {
		return fmt.Errorf("Node metadata cannot contain more than %d key/value pairs", metaMaxPairs)
	}
	for k, v := range meta {
		var err error
		switch {
		case k == "":
			err = fmt.Errorf("Key cannot be blank")
		case !metaKeyFormat(k):
			err = fmt.Errorf("Key contains invalid characters")
		case len(k) > metaKeyMaxLength:
			err = fmt.Errorf("Key is too long (limit: %d characters)", metaKeyMaxLength)
		case strings.HasPrefix(k, metaReservedPrefix):
			err = fmt.Errorf("Key prefix '%s' is reserved for internal use", metaReservedPrefix)
		case len(v) > metaValueMaxLength:
			err = fmt.Errorf("Value is too long (limit: %d characters)", metaValueMaxLength)
		}
		if err != nil {
			return fmt.Errorf("Couldn't load metadata pair ('%s', '%s'): %s", k, v, err)
		}
	}
	return nil
}

func isAny(addr string) bool {
	a, err := netip.ParseAddr(strings.Trim(addr, "[]"))
	return err == nil && a.IsUnspecified()
}

func (s *Server) register(w http.ResponseWriter, req *http.Request) {
	var def serviceDef
	if err := json.NewDecoder(req.Body).Decode(&def); err != nil {
		fail(w, http.StatusBadRequest, "Request decode failed: %v", err)
		return
	}
	if def.Name == "" {
		fail(w, http.StatusBadRequest, "Missing service name")
		return
	}
	if isAny(def.Address) {
		fail(w, http.StatusBadRequest, "Invalid service address")
		return
	}
	if def.Kind != "" {
		fail(w, http.StatusBadRequest, "consultest: service kind %q is not modelled", def.Kind)
		return
	}
	if err := validateMeta(def.Meta); err != nil {
		fail(w, http.StatusBadRequest, "Invalid Service Meta: %v", err)
		return
	}
	var checks []*checkDef
	for _, c := range append([]*checkDef{def.Check}, def.Checks...) {
		if c != nil && !c.empty() {
			checks = append(checks, c)
		}
	}
	for _, c := range checks {
		if err := c.validate(); err != nil {
			fail(w, http.StatusBadRequest, "Invalid check: %v", err)
			return
		}
		if c.Status != "" && !validStatus(c.Status) {
			fail(w, http.StatusBadRequest, "Status for checks must 'passing', 'warning', 'critical'")
			return
		}
	}
	q := req.URL.Query()
	replace := len(q["replace-existing-checks"]) > 0 &&
		(q.Get("replace-existing-checks") == "" || q.Get("replace-existing-checks") == "true")
	s.mu.Lock()
	s.registerLocked(&def, checks, replace)
	s.mu.Unlock()
}

// registerLocked adds or replaces a service the way the agent does.
func (s *Server) registerLocked(def *serviceDef, defs []*checkDef, replace bool) {
	id := def.ID
	if id == "" {
		id = def.Name
	}
	old := s.services[id]
	svc := &service{Service: Service{
		ID: id, Name: def.Name, Address: def.Address, Port: def.Port,
		Tags: slices.Clone(def.Tags), Meta: def.Meta,
	}}
	for i, d := range defs {
		cid := d.CheckID
		if cid == "" {
			cid = "service:" + id
			if len(defs) > 1 {
				cid += ":" + strconv.Itoa(i+1)
			}
		}
		name := d.Name
		if name == "" {
			name = fmt.Sprintf("Service '%s' check", def.Name)
		}
		c := &check{
			Check: Check{
				ID: cid, Name: name, Status: Critical,
				GRPC: d.GRPC, GRPCUseTLS: d.GRPCUseTLS, TLSServerName: d.TLSServerName, TLSSkipVerify: d.TLSSkipVerify,
				Interval: time.Duration(d.Interval), Timeout: time.Duration(d.Timeout), TTL: time.Duration(d.TTL),
				DeregisterCriticalServiceAfter: time.Duration(d.DeregisterCriticalServiceAfter),
			},
			typ: d.typ(),
		}
		if d.Status != "" {
			c.Status = d.Status
		}
		if prev := s.findCheckLocked(cid); prev != nil { // the agent restores a known check's state
			c.Status, c.Output = prev.Status, prev.Output
		}
		svc.checks = append(svc.checks, c)
	}
	if old != nil && !replace { // without replace-existing-checks, other checks stay
		for _, oc := range old.checks {
			if !slices.ContainsFunc(svc.checks, func(c *check) bool { return c.ID == oc.ID }) {
				kept := *oc
				kept.stop = nil // handed over below, like any unchanged probe
				svc.checks = append(svc.checks, &kept)
			}
		}
	}
	if old != nil && sameService(old, svc) {
		return // an idempotent write does not move the index
	}

	idx := s.bumpLocked(def.Name)
	if old != nil && old.Name != def.Name {
		s.bumpLocked(old.Name)
		idx = s.index
	}
	svc.createIndex, svc.modifyIndex = idx, idx
	if old != nil {
		svc.createIndex = old.createIndex
	}
	for _, c := range svc.checks {
		c.createIndex, c.modifyIndex = idx, idx
		if old == nil {
			continue
		}
		for _, oc := range old.checks {
			if oc.ID != c.ID {
				continue
			}
			c.createIndex = oc.createIndex
			if oc.Check == c.Check && oc.typ == c.typ {
				c.modifyIndex = oc.modifyIndex
			}
			if sameProbe(oc, c) {
				c.stop, oc.stop = oc.stop, nil // same probe: keep it running
			}
		}
	}
	if old != nil {
		stopProbes(old)
	}
	s.services[id] = svc
	if s.opts.DialChecks {
		for _, c := range svc.checks {
			if c.typ == "grpc" && c.stop == nil {
				s.startProbeLocked(svc.ID, c)
			}
		}
	}
}

func (s *Server) findCheckLocked(id string) *check {
	for _, svc := range s.services {
		for _, c := range svc.checks {
			if c.ID == id {
				return c
			}
		}
	}
	return nil
}

func sameService(a, b *service) bool {
	if a.Name != b.Name || a.Address != b.Address || a.Port != b.Port ||
		!slices.Equal(a.Tags, b.Tags) || !reflect.DeepEqual(a.Meta, b.Meta) || len(a.checks) != len(b.checks) {
		return false
	}
	for i := range a.checks {
		if a.checks[i].Check != b.checks[i].Check || a.checks[i].typ != b.checks[i].typ {
			return false
		}
	}
	return true
}

func sameProbe(a, b *check) bool {
	return a.typ == b.typ && a.GRPC == b.GRPC && a.GRPCUseTLS == b.GRPCUseTLS && a.TLSSkipVerify == b.TLSSkipVerify &&
		a.TLSServerName == b.TLSServerName && a.Interval == b.Interval && a.Timeout == b.Timeout
}

func (s *Server) deregister(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.services[id]
	if svc == nil {
		fail(w, http.StatusNotFound, "Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id)
		return
	}
	stopProbes(svc)
	delete(s.services, id)
	s.bumpLocked(svc.Name)
}

// Wire shapes of GET /v1/health/service/:name, as Consul serialises them.
type (
	healthEntry struct {
		Node    nodeJSON
		Service serviceJSON
		Checks  []checkJSON
	}
	nodeJSON struct {
		ID, Node, Address, Datacenter string
		TaggedAddresses               map[string]string
		Meta                          map[string]string
		CreateIndex, ModifyIndex      uint64
	}
	serviceJSON struct {
		ID, Service       string
		Tags              []string
		Address           string
		TaggedAddresses   map[string]addressJSON `json:",omitempty"`
		Meta              map[string]string
		Port              int
		Weights           weightsJSON
		EnableTagOverride bool
		CreateIndex       uint64
		ModifyIndex       uint64
	}
	addressJSON struct {
		Address string
		Port    int
	}
	weightsJSON struct{ Passing, Warning int }
	checkJSON   struct {
		Node, CheckID, Name, Status, Notes, Output, ServiceID, ServiceName string
		ServiceTags                                                        []string
		Type                                                               string
		Interval, Timeout                                                  string `json:",omitempty"`
		ExposedPort                                                        int
		Definition                                                         definitionJSON
		CreateIndex, ModifyIndex                                           uint64
	}
	definitionJSON struct {
		GRPC                           string `json:",omitempty"`
		GRPCUseTLS                     bool   `json:",omitempty"`
		Interval                       string
		Timeout                        string
		DeregisterCriticalServiceAfter string
	}
)

func (s *Server) health(w http.ResponseWriter, req *http.Request, r *run) {
	q := req.URL.Query()
	name := req.PathValue("name")
	if name == "" {
		fail(w, http.StatusBadRequest, "Missing service name")
		return
	}
	if dc := q.Get("dc"); dc != "" && dc != s.opts.Datacenter {
		fail(w, http.StatusInternalServerError, "No path to datacenter")
		return
	}
	passing := false
	if _, ok := q["passing"]; ok {
		passing = true
		if v := q.Get("passing"); v != "" {
			var err error
			if passing, err = strconv.ParseBool(v); err != nil {
				fail(w, http.StatusBadRequest, "Invalid value for ?passing")
				return
			}
		}
	}
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		var err error
		if minIndex, err = strconv.ParseUint(v, 10, 64); err != nil {
			fail(w, http.StatusBadRequest, "Invalid index")
			return
		}
	}
	wait := defaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fail(w, http.StatusBadRequest, "Invalid wait time")
			return
		}
		wait = min(d, maxWait)
	}

	var timeout <-chan time.Time
	if minIndex > 0 {
		t := time.NewTimer(wait + rand.N(wait/16+1)) // Consul's jitter: up to wait/16
		defer t.Stop()
		timeout = t.C
	}
	timedOut := false
	for {
		s.mu.Lock()
		idx, changed := s.queryIndexLocked(name), s.changed
		if minIndex == 0 || idx > minIndex || timedOut {
			entries := s.entriesLocked(name, q["tag"], passing)
			s.mu.Unlock()
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("X-Consul-Index", strconv.FormatUint(idx, 10))
			h.Set("X-Consul-KnownLeader", "true")
			h.Set("X-Consul-LastContact", "0")
			consistency := "leader"
			if _, ok := q["stale"]; ok {
				consistency = "stale"
			}
			h.Set("X-Consul-Effective-Consistency", consistency)
			_ = json.NewEncoder(w).Encode(entries)
			return
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timeout:
			timedOut = true
		case <-req.Context().Done():
			return
		case <-r.stopping:
			panic(http.ErrAbortHandler)
		}
	}
}

func (s *Server) entriesLocked(name string, tags []string, passingOnly bool) []healthEntry {
	node := nodeJSON{
		ID: "7d6e3f8a-0000-4000-8000-000000000001", Node: s.opts.NodeName, Address: s.opts.NodeAddress,
		Datacenter: s.opts.Datacenter,
		TaggedAddresses: map[string]string{
			"lan": s.opts.NodeAddress, "lan_ipv4": s.opts.NodeAddress,
			"wan": s.opts.NodeAddress, "wan_ipv4": s.opts.NodeAddress,
		},
		Meta:        map[string]string{"consul-network-segment": ""},
		CreateIndex: 1, ModifyIndex: 1,
	}
	serf := checkJSON{
		Node: s.opts.NodeName, CheckID: "serfHealth", Name: "Serf Health Status", Status: Passing,
		Output: "Agent alive and reachable", ServiceTags: []string{}, CreateIndex: 1, ModifyIndex: 1,
		Definition: definitionJSON{Interval: "0s", Timeout: "0s", DeregisterCriticalServiceAfter: "0s"},
	}
	out := []healthEntry{} // an empty list, never null
	for _, id := range slices.Sorted(maps.Keys(s.services)) {
		svc := s.services[id]
		if svc.Name != name || !hasTags(svc.Tags, tags) {
			continue
		}
		e := healthEntry{Node: node, Service: serviceJSON{
			ID: svc.ID, Service: svc.Name, Tags: nonNil(svc.Tags), Address: svc.Address, Meta: svc.Meta,
			Port: svc.Port, Weights: weightsJSON{Passing: 1, Warning: 1},
			CreateIndex: svc.createIndex, ModifyIndex: svc.modifyIndex,
		}, Checks: []checkJSON{serf}}
		if a, err := netip.ParseAddr(svc.Address); err == nil {
			lan, wan := "lan_ipv4", "wan_ipv4"
			if a.Is6() && !a.Is4In6() {
				lan, wan = "lan_ipv6", "wan_ipv6"
			}
			e.Service.TaggedAddresses = map[string]addressJSON{
				lan: {svc.Address, svc.Port}, wan: {svc.Address, svc.Port},
			}
		}
		ok := true
		for _, c := range svc.checks {
			ok = ok && c.Status == Passing
			cj := checkJSON{
				Node: s.opts.NodeName, CheckID: c.ID, Name: c.Name, Status: c.Status, Output: c.Output,
				ServiceID: svc.ID, ServiceName: svc.Name, ServiceTags: nonNil(svc.Tags), Type: c.typ,
				Definition: definitionJSON{
					GRPC: c.GRPC, GRPCUseTLS: c.GRPCUseTLS, Interval: c.Interval.String(), Timeout: c.Timeout.String(),
					DeregisterCriticalServiceAfter: c.DeregisterCriticalServiceAfter.String(),
				},
				CreateIndex: c.createIndex, ModifyIndex: c.modifyIndex,
			}
			if c.Interval > 0 {
				cj.Interval = c.Interval.String()
			}
			if c.Timeout > 0 {
				cj.Timeout = c.Timeout.String()
			}
			e.Checks = append(e.Checks, cj)
		}
		if passingOnly && !ok {
			continue
		}
		out = append(out, e)
	}
	return out
}

// hasTags reports whether have holds every tag in want, ignoring case as Consul does.
func hasTags(have, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			return false
		}
	}
	return true
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}
