package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// isTerminal reports whether v is an *os.File open on a terminal.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// promptSecret writes prompt to stderr and reads one line from stdin,
// without echo when stdin is a terminal (on Linux). The value is never
// printed.
func (a *app) promptSecret(prompt string) (string, error) {
	fmt.Fprint(a.env.stderr, prompt)
	defer fmt.Fprintln(a.env.stderr)
	if f, ok := a.env.stdin.(*os.File); ok && isTerminal(f) {
		defer noEcho(f)()
	}
	if a.env.stdin == nil {
		return "", fmt.Errorf("no input to read from")
	}
	line, err := bufio.NewReader(a.env.stdin).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("read input: %w", err)
	}
	line = strings.TrimSpace(line)
	if line == "" {
		return "", usageErrorf("no value given")
	}
	return line, nil
}
