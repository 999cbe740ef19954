//go:build !linux

package cli

import "os"

// noEcho is a no-op outside Linux: the input is echoed.
func noEcho(*os.File) (restore func()) { return func() {} }
