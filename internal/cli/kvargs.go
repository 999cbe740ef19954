package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// parseKV turns arguments into data, as Vault's CLI does: "key=value",
// "key=@file" (the file's content), "key=-" (stdin as the value) and a
// lone "-" (stdin holds a JSON object). Malformed arguments are usage
// errors; file and stdin failures are not.
func parseKV(args []string, stdin io.Reader) (map[string]any, error) {
	data := map[string]any{}
	stdinUsed := false
	readStdin := func() ([]byte, error) {
		if stdinUsed {
			return nil, usageErrorf("stdin can be used only once")
		}
		stdinUsed = true
		if stdin == nil {
			return nil, fmt.Errorf("no stdin")
		}
		return io.ReadAll(stdin)
	}
	for _, arg := range args {
		if arg == "-" {
			b, err := readStdin()
			if err != nil {
				return nil, err
			}
			var m map[string]any
			dec := json.NewDecoder(strings.NewReader(string(b)))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				return nil, usageErrorf("stdin is not a JSON object: %v", err)
			}
			for k, v := range m {
				data[k] = v
			}
			continue
		}
		k, v, ok := strings.Cut(arg, "=")
		if !ok || k == "" {
			return nil, usageErrorf("argument %q is not of the form key=value", arg)
		}
		switch {
		case v == "-":
			b, err := readStdin()
			if err != nil {
				return nil, err
			}
			v = string(b)
		case strings.HasPrefix(v, "@"):
			b, err := os.ReadFile(v[1:])
			if err != nil {
				return nil, fmt.Errorf("read value of %q: %w", k, err)
			}
			v = string(b)
		}
		data[k] = v
	}
	return data, nil
}

// parsePairs turns "k=v" flags into a string map.
func parsePairs(flag string, pairs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--%s %q is not of the form key=value", flag, p)
		}
		m[k] = v
	}
	return m, nil
}
