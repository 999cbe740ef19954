// Package store keeps the named ACL policies of a Coffer server and
// serves Vault's policy endpoints.
//
// Policies are stored as JSON entries, one per name, in the logical
// Storage the core hands over (a view of the barrier, so they are
// encrypted at rest), and cached in memory: parsed policies by name and
// compiled ACLs by the set of names a token carries. Every write through
// the Store invalidates the caches, so a Store must be the only writer of
// its storage, or be told by Invalidate when another writer changed it.
//
// Two policies are built in. "root" grants everything; it is never
// stored and cannot be written or deleted. "default" is Vault's default
// policy (policy.DefaultPolicyText) until someone writes another text
// under that name; it can be changed but not deleted. Both are listed.
//
// HandleRequest serves, relative to "sys/":
//
//	LIST   policies/acl             {"keys": [...]}
//	GET    policies/acl/<name>      {"name", "policy", "version", "modified", "cas_required", ...}
//	PUT    policies/acl/<name>      {"policy": "<hcl or base64>", "cas": n, "cas_required": b}
//	PATCH  policies/acl/<name>      the same, unspecified fields kept
//	DELETE policies/acl/<name>
//	GET    policy                   {"keys": [...], "policies": [...]}
//	GET    policy/<name>            as policies/acl/<name>, with "rules" for "policy"
//	PUT    policy/<name>            {"policy": "..."} or {"rules": "..."}
//	DELETE policy/<name>
//
// Names are lower-cased and trimmed, as in Vault; they may contain
// letters, digits and "-_.@:+", at most 128 of them.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/policy"
)

// ErrNotFound is returned by Get for a policy that does not exist.
var ErrNotFound = errors.New("policy store: no such policy")

// Config configures a Store.
type Config struct {
	// Storage holds the policies, one key per name. Required.
	Storage logical.Storage
	// Now is the clock for the "modified" time. Nil: time.Now.
	Now func() time.Time
}

// Cache bounds: past them a cache is emptied and refilled on demand.
const (
	maxCachedPolicies = 4096
	maxCachedACLs     = 1024
	maxNameLen        = 128
)

// Store is the policy store. It is safe for concurrent use.
type Store struct {
	storage logical.Storage
	now     func() time.Time

	mu sync.RWMutex // guards following; held for writing across every storage write
	// policies caches loaded policies by name; a nil value records that
	// the name does not exist.
	policies map[string]*stored
	// acls caches compiled ACLs by aclKey.
	acls map[string]*policy.ACL
	// gen counts writes, so that an ACL compiled while a write happened is
	// not cached.
	gen uint64
}

// stored is a policy as kept in storage, with its parsed form.
type stored struct {
	entry  entry
	policy *policy.Policy
}

// entry is the JSON stored under a policy's name.
type entry struct {
	// Version counts writes, from 1; check-and-set compares against it.
	Version     int       `json:"version"`
	CASRequired bool      `json:"cas_required,omitempty"`
	Raw         string    `json:"raw"`
	Modified    time.Time `json:"modified"`
}

// New returns a Store over cfg.Storage.
func New(cfg Config) (*Store, error) {
	if cfg.Storage == nil {
		return nil, errors.New("policy store: Config.Storage is required")
	}
	s := &Store{
		storage:  cfg.Storage,
		now:      cfg.Now,
		policies: map[string]*stored{},
		acls:     map[string]*policy.ACL{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// sanitize normalizes a policy name as Vault does.
func sanitize(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// validName reports whether a sanitized name may name a policy.
func validName(name string) bool {
	if name == "" || len(name) > maxNameLen || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_.@:+", r):
		default:
			return false
		}
	}
	return true
}

// load returns the named policy (name sanitized and valid), or nil if it
// does not exist.
func (s *Store) load(ctx context.Context, name string) (*stored, error) {
	if name == policy.RootName {
		return &stored{policy: policy.RootPolicy()}, nil
	}
	s.mu.RLock()
	c, ok := s.policies[name]
	s.mu.RUnlock()
	if ok {
		return c, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked(ctx, name)
}

func (s *Store) loadLocked(ctx context.Context, name string) (*stored, error) {
	if c, ok := s.policies[name]; ok {
		return c, nil
	}
	var c *stored
	raw, err := s.storage.Get(ctx, name)
	switch {
	case errors.Is(err, logical.ErrNotFound):
		if name == policy.DefaultName {
			c = &stored{entry: entry{Raw: policy.DefaultPolicyText}, policy: policy.DefaultPolicy()}
		}
	case err != nil:
		return nil, fmt.Errorf("policy store: read %q: %w", name, err)
	default:
		c = &stored{}
		if err := json.Unmarshal(raw, &c.entry); err != nil {
			return nil, fmt.Errorf("policy store: decode %q: %w", name, err)
		}
		if c.policy, err = policy.Parse(name, c.entry.Raw); err != nil {
			return nil, fmt.Errorf("policy store: stored policy %q does not parse: %w", name, err)
		}
	}
	if len(s.policies) >= maxCachedPolicies {
		clear(s.policies)
	}
	s.policies[name] = c
	return c, nil
}

// Get returns the named policy. It returns ErrNotFound if there is none.
func (s *Store) Get(ctx context.Context, name string) (*policy.Policy, error) {
	name = sanitize(name)
	if !validName(name) {
		return nil, ErrNotFound
	}
	c, err := s.load(ctx, name)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, ErrNotFound
	}
	return c.policy, nil
}

// Put parses src and stores it as the named policy, replacing any
// previous text. It fails with a *logical.Error: Invalid for a bad name,
// the root policy or text that does not parse (the message carries the
// parse error and its position); Conflict if the stored policy requires
// check-and-set (write it through HandleRequest with "cas").
func (s *Store) Put(ctx context.Context, name, src string) error {
	return s.put(ctx, name, writeArgs{policy: &src})
}

// writeArgs are the fields of a write; nil means "not given".
type writeArgs struct {
	policy      *string
	cas         *int
	casRequired *bool
	patch       bool
}

func (s *Store) put(ctx context.Context, name string, w writeArgs) error {
	name = sanitize(name)
	switch {
	case name == policy.RootName:
		return logical.Errorf(logical.Invalid, "cannot update %q policy", name)
	case !validName(name):
		return logical.Errorf(logical.Invalid, "invalid policy name: use at most %d letters, digits and -_.@:+", maxNameLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.loadLocked(ctx, name)
	if err != nil {
		return err
	}
	var prev entry
	if old != nil {
		prev = old.entry
	}
	if w.patch {
		if old == nil {
			return logical.Errorf(logical.NotFound, "policy %q does not exist", name)
		}
		if w.policy == nil {
			w.policy = &prev.Raw
		}
		if w.casRequired == nil {
			w.casRequired = &prev.CASRequired
		}
	}
	if w.policy == nil || *w.policy == "" {
		return logical.Errorf(logical.Invalid, "'policy' parameter not supplied or empty")
	}
	casRequired := w.casRequired != nil && *w.casRequired
	if w.cas == nil && (prev.CASRequired || casRequired) {
		return logical.Errorf(logical.Conflict, "check-and-set parameter required for this call")
	}
	if w.cas != nil {
		if *w.cas == -1 && old != nil && prev.Version > 0 {
			return logical.Errorf(logical.Conflict, "check-and-set parameter set to -1 on existing entry")
		}
		if *w.cas != -1 && *w.cas != prev.Version {
			return logical.Errorf(logical.Conflict, "check-and-set parameter did not match the current version")
		}
	}
	p, err := policy.Parse(name, *w.policy)
	if err != nil {
		return logical.Errorf(logical.Invalid, "failed to parse policy: %v", err)
	}
	e := entry{Version: prev.Version + 1, CASRequired: casRequired, Raw: *w.policy, Modified: s.now().UTC()}
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("policy store: encode %q: %w", name, err)
	}
	if err := s.storage.Put(ctx, name, raw); err != nil {
		delete(s.policies, name)
		s.invalidateLocked()
		return fmt.Errorf("policy store: write %q: %w", name, err)
	}
	s.policies[name] = &stored{entry: e, policy: p}
	s.invalidateLocked()
	return nil
}

// Invalidate drops every cached policy and ACL. Call it when the storage
// changed under the Store, e.g. on a replica applying writes made by
// another node.
func (s *Store) Invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.policies)
	s.invalidateLocked()
}

// invalidateLocked drops the compiled ACLs after a write.
func (s *Store) invalidateLocked() {
	s.gen++
	clear(s.acls)
}

// Delete removes the named policy; removing a missing policy is not an
// error. The root and default policies cannot be deleted (an Invalid
// *logical.Error).
func (s *Store) Delete(ctx context.Context, name string) error {
	name = sanitize(name)
	switch name {
	case policy.RootName:
		return logical.Errorf(logical.Invalid, "cannot delete %q policy", name)
	case policy.DefaultName:
		return logical.Errorf(logical.Invalid, "cannot delete default policy")
	}
	if !validName(name) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.storage.Delete(ctx, name)
	delete(s.policies, name)
	s.invalidateLocked()
	if err != nil {
		return fmt.Errorf("policy store: delete %q: %w", name, err)
	}
	return nil
}

// List returns the names of all policies, "default" and "root" included,
// sorted.
func (s *Store) List(ctx context.Context) ([]string, error) {
	keys, err := s.storage.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("policy store: list: %w", err)
	}
	names := []string{policy.DefaultName, policy.RootName}
	for _, k := range keys {
		if !strings.HasSuffix(k, "/") {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// ACL returns the compiled ACL of the named policies, as a token carrying
// them gets it. Names are sanitized; names of policies that do not exist
// are skipped, as Vault does. "root" among them makes the root ACL.
// ACLs are cached by the set of names until the next write. A stored
// policy that cannot be read fails the call rather than being skipped.
func (s *Store) ACL(ctx context.Context, names []string) (*policy.ACL, error) {
	set := make([]string, 0, len(names))
	for _, n := range names {
		if n = sanitize(n); validName(n) {
			set = append(set, n)
		}
	}
	slices.Sort(set)
	set = slices.Compact(set)
	key := strings.Join(set, ",") // "," is not allowed in names

	s.mu.RLock()
	acl, ok := s.acls[key]
	gen := s.gen
	s.mu.RUnlock()
	if ok {
		return acl, nil
	}
	ps := make([]*policy.Policy, 0, len(set))
	for _, n := range set {
		c, err := s.load(ctx, n)
		if err != nil {
			return nil, err
		}
		if c != nil {
			ps = append(ps, c.policy)
		}
	}
	acl = policy.NewACL(ps...)
	s.mu.Lock()
	if s.gen == gen {
		if len(s.acls) >= maxCachedACLs {
			clear(s.acls)
		}
		s.acls[key] = acl
	}
	s.mu.Unlock()
	return acl, nil
}

// Text returns a policy's text as it was written (ErrNotFound if none);
// the built-in default policy's text until someone writes it.
func (s *Store) Text(ctx context.Context, name string) (string, error) {
	st, err := s.load(ctx, sanitize(name))
	if err != nil {
		return "", err
	}
	if st == nil {
		return "", ErrNotFound
	}
	return st.entry.Raw, nil
}
