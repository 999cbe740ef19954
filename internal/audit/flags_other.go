//go:build !unix

package audit

import "errors"

// Outside Unix there are no FIFOs, and the server does not run there; the
// package still builds so that the CLI's offline commands (verify, query)
// work everywhere.
const (
	oNonBlock = 0
	oNoFollow = 0
	oCloExec  = 0
)

var errENXIO = errors.New("audit: no FIFOs on this system")
