package declarative

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

type fileSchema struct {
	Mounts   []mountBlock  `hcl:"mount,block"`
	Auths    []mountBlock  `hcl:"auth,block"`
	Policies []policyBlock `hcl:"policy,block"`
	Audits   []auditBlock  `hcl:"audit,block"`
}

type mountBlock struct {
	Path        string            `hcl:"path,label"`
	Type        string            `hcl:"type"`
	Description string            `hcl:"description,optional"`
	Options     map[string]string `hcl:"options,optional"`
	Config      map[string]string `hcl:"config,optional"`
}

type policyBlock struct {
	Name string `hcl:"name,label"`
	Text string `hcl:"text"`
}

type auditBlock struct {
	Path        string            `hcl:"path,label"`
	Type        string            `hcl:"type"`
	Description string            `hcl:"description,optional"`
	Options     map[string]string `hcl:"options,optional"`
}

// reserved are mount paths the server owns.
var reserved = []string{"sys/", "auth/", "cubbyhole/", "identity/"}

// Load reads path: one HCL file, or every *.hcl file of a directory (not
// recursive, in name order) merged into one State. An object defined
// twice, in one file or across files, is ErrInvalid.
func Load(path string) (State, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("declarative: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		if files, err = filepath.Glob(filepath.Join(path, "*.hcl")); err != nil {
			return nil, fmt.Errorf("declarative: %w", err)
		}
		slices.Sort(files)
	}
	out := State{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("declarative: %w", err)
		}
		s, err := Parse(f, src)
		if err != nil {
			return nil, err
		}
		for k, o := range s {
			if _, dup := out[k]; dup {
				return nil, fmt.Errorf("%w: %s: %s is defined in more than one file", ErrInvalid, f, k)
			}
			out[k] = o
		}
	}
	return out, nil
}

// Parse reads one file's source; filename is used in error positions.
// Errors wrap ErrInvalid and say where.
func Parse(filename string, src []byte) (State, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, diags.Error())
	}
	var fs fileSchema
	if diags := gohcl.DecodeBody(f.Body, nil, &fs); diags.HasErrors() {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, diags.Error())
	}
	out := State{}
	add := func(o Object) error {
		if _, dup := out[o.Key]; dup {
			return fmt.Errorf("%w: %s: %s is defined twice", ErrInvalid, filename, o.Key)
		}
		out[o.Key] = o
		return nil
	}
	for _, b := range fs.Mounts {
		o, err := mountObject(filename, Mount, b)
		if err == nil {
			err = add(o)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, b := range fs.Auths {
		o, err := mountObject(filename, Auth, b)
		if err == nil {
			err = add(o)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, b := range fs.Policies {
		name := strings.ToLower(strings.TrimSpace(b.Name))
		switch {
		case name == "" || strings.ContainsAny(name, "/ "):
			return nil, fmt.Errorf("%w: %s: policy name %q", ErrInvalid, filename, b.Name)
		case name == "root":
			return nil, fmt.Errorf("%w: %s: the root policy cannot be configured", ErrInvalid, filename)
		case strings.TrimSpace(b.Text) == "":
			return nil, fmt.Errorf("%w: %s: policy %q has no text", ErrInvalid, filename, name)
		}
		if err := add(Object{Key: Key{Policy, name}, Text: b.Text}); err != nil {
			return nil, err
		}
	}
	for _, b := range fs.Audits {
		p, err := cleanPath(filename, Audit, b.Path)
		if err != nil {
			return nil, err
		}
		if b.Type == "" {
			return nil, fmt.Errorf("%w: %s: audit %q has no type", ErrInvalid, filename, b.Path)
		}
		if err := add(Object{Key: Key{Audit, p}, Type: b.Type, Description: b.Description, Options: b.Options}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func mountObject(filename string, kind Kind, b mountBlock) (Object, error) {
	p, err := cleanPath(filename, kind, b.Path)
	if err != nil {
		return Object{}, err
	}
	if b.Type == "" {
		return Object{}, fmt.Errorf("%w: %s: %s %q has no type", ErrInvalid, filename, kind, b.Path)
	}
	if kind == Mount {
		for _, r := range reserved {
			if p == r || strings.HasPrefix(p, r) {
				return Object{}, fmt.Errorf("%w: %s: mount path %q is reserved", ErrInvalid, filename, p)
			}
		}
	}
	if kind == Auth && p == "token/" {
		return Object{}, fmt.Errorf("%w: %s: auth/token is built in", ErrInvalid, filename)
	}
	return Object{Key: Key{kind, p}, Type: b.Type, Description: b.Description, Options: b.Options, Config: b.Config}, nil
}

// cleanPath normalizes a mount, auth or audit path to "a/b/" and refuses
// empty, "." and ".." segments.
func cleanPath(filename string, kind Kind, p string) (string, error) {
	t := strings.Trim(strings.TrimSpace(p), "/")
	if t == "" {
		return "", fmt.Errorf("%w: %s: %s path is empty", ErrInvalid, filename, kind)
	}
	for _, seg := range strings.Split(t, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%w: %s: %s path %q has an empty, . or .. segment", ErrInvalid, filename, kind, p)
		}
	}
	return t + "/", nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
