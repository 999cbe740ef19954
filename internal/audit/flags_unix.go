//go:build unix

package audit

import "syscall"

const (
	oNonBlock = syscall.O_NONBLOCK
	oNoFollow = syscall.O_NOFOLLOW
	oCloExec  = syscall.O_CLOEXEC
)

var errENXIO error = syscall.ENXIO
