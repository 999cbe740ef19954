package audit

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/coffer-dev/coffer/internal/logical"
)

// ErrPathNotAllowed is returned (inside a logical.Error with code Invalid)
// when an API-enabled file device would write outside the allowed
// directories.
var ErrPathNotAllowed = errors.New("audit: file_path is not under an allowed directory")

// pathError is an Invalid logical.Error that also matches
// ErrPathNotAllowed with errors.Is.
type pathError struct {
	err *logical.Error
}

func (e *pathError) Error() string   { return e.err.Message }
func (e *pathError) Unwrap() []error { return []error{e.err, ErrPathNotAllowed} }

func notAllowed(reason string) error {
	return &pathError{logical.Errorf(logical.Invalid, "audit: file_path is not allowed: %s", reason)}
}

// resolveAllowed returns the path to open for a file device enabled
// through the API: p with every symlink of its directory resolved, if it
// lies under one of allowed (themselves resolved). It refuses ".."
// segments (the kernel resolves them after symlinks, so a lexical check
// would be wrong), a final component that is a symlink, and an existing
// file that is neither a regular file nor a FIFO. allowAny skips the
// directory rule but not the symlink rule.
func resolveAllowed(p string, allowed []string, allowAny bool) (string, error) {
	if !filepath.IsAbs(p) {
		return "", notAllowed("it must be an absolute path")
	}
	if slices.Contains(strings.Split(filepath.ToSlash(p), "/"), "..") {
		return "", notAllowed(`it must not contain ".."`)
	}
	clean := filepath.Clean(p)
	dir, err := filepath.EvalSymlinks(filepath.Dir(clean))
	if err != nil {
		return "", notAllowed("its directory does not exist or cannot be resolved")
	}
	target := filepath.Join(dir, filepath.Base(clean))
	if fi, err := os.Lstat(target); err == nil {
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return "", notAllowed("it is a symbolic link")
		case fi.Mode().IsRegular(), fi.Mode()&fs.ModeNamedPipe != 0:
		default:
			return "", notAllowed("it is neither a regular file nor a FIFO")
		}
	}
	if allowAny {
		return target, nil
	}
	for _, a := range allowed {
		ra, err := filepath.EvalSymlinks(a)
		if err != nil || !filepath.IsAbs(ra) {
			continue
		}
		rel, err := filepath.Rel(ra, target)
		if err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return target, nil
		}
	}
	if len(allowed) == 0 {
		return "", notAllowed("no audit_allowed_dirs are configured")
	}
	return "", notAllowed("it is outside audit_allowed_dirs")
}
