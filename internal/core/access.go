package core

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/policy"
)

// sys/access (Coffer-only): who can read this? It answers from the
// policies as written, not from tokens: the policies whose deciding rule
// for the path grants or denies something, and the roles of every auth
// method (and the token store) that hand out one of those policies.

type accessPolicy struct {
	Name         string   `json:"name"`
	Rule         string   `json:"rule"`
	Capabilities []string `json:"capabilities"`
	Effect       string   `json:"effect"` // grant or deny
}

type accessRole struct {
	Mount    string   `json:"mount"`
	Type     string   `json:"type"`
	Name     string   `json:"name"`
	Policies []string `json:"policies"`
}

func (s *sysBackend) access(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req.Operation != logical.ReadOperation {
		return nil, logical.ErrUnsupportedOperation
	}
	path := strings.TrimPrefix(req.Query.Get("path"), "/")
	if path == "" {
		return nil, logical.Errorf(logical.Invalid, "missing path: sys/access?path=secret/data/app")
	}
	if _, err := CleanPath(path); err != nil {
		return nil, err
	}
	names, err := s.st.policies.List(ctx)
	if err != nil {
		return nil, err
	}
	policies := []accessPolicy{}
	reaching := map[string]bool{}
	for _, name := range names {
		var acl *policy.ACL
		if name == "root" {
			acl = policy.NewACL(policy.RootPolicy())
		} else {
			p, err := s.st.policies.Get(ctx, name)
			if err != nil {
				return nil, err
			}
			acl = policy.NewACL(p)
		}
		d := acl.Decide(path)
		if !d.Matched {
			continue
		}
		effect := "grant"
		if slices.Contains(d.Capabilities, "deny") {
			effect = "deny"
		} else {
			reaching[name] = true
		}
		policies = append(policies, accessPolicy{Name: name, Rule: d.Rule, Capabilities: d.Capabilities, Effect: effect})
	}
	roles := []accessRole{}
	for _, e := range s.st.mounts.table.entries() {
		if !strings.HasPrefix(e.Path, "auth/") {
			continue
		}
		m := s.st.mounts.table.get(e.Path)
		if m == nil {
			continue
		}
		rl, ok := m.backend.(logical.RoleLister)
		if !ok {
			continue
		}
		rs, err := rl.Roles(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			var hit []string
			for _, p := range r.Policies {
				if reaching[p] {
					hit = append(hit, p)
				}
			}
			if len(hit) > 0 {
				roles = append(roles, accessRole{Mount: e.Path, Type: e.Type, Name: r.Name, Policies: hit})
			}
		}
	}
	sort.Slice(roles, func(i, j int) bool {
		if roles[i].Mount != roles[j].Mount {
			return roles[i].Mount < roles[j].Mount
		}
		return roles[i].Name < roles[j].Name
	})
	return &logical.Response{Data: map[string]any{"path": path, "policies": policies, "roles": roles}}, nil
}
