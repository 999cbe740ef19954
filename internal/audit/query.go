package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Filter selects entries for Query. Zero fields match everything.
type Filter struct {
	// Path matches the request path exactly, or as a prefix when it ends
	// in "*" ("secret/data/app*").
	Path string
	// Since drops entries older than it.
	Since time.Time
	// Operation matches the request operation ("read", "update", ...).
	Operation string
}

func (f Filter) match(path, op string, t time.Time) bool {
	if f.Path != "" {
		if p, ok := strings.CutSuffix(f.Path, "*"); ok {
			if !strings.HasPrefix(path, p) {
				return false
			}
		} else if path != f.Path {
			return false
		}
	}
	if f.Operation != "" && op != f.Operation {
		return false
	}
	return f.Since.IsZero() || !t.Before(f.Since)
}

// Record is one request found by Query: who made it, from where, and how
// it ended.
type Record struct {
	Time          time.Time         `json:"time"`
	RequestID     string            `json:"request_id"`
	Operation     string            `json:"operation"`
	Path          string            `json:"path"`
	DisplayName   string            `json:"display_name"`
	Accessor      string            `json:"accessor"`
	Policies      []string          `json:"policies"`
	Metadata      map[string]string `json:"metadata"`
	RemoteAddress string            `json:"remote_address"`
	// Outcome is "ok", "error: <message>" or "no response" (the request
	// entry has no matching response in the log).
	Outcome string `json:"outcome"`
}

type queryLine struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	Auth struct {
		DisplayName string            `json:"display_name"`
		Accessor    string            `json:"accessor"`
		Policies    []string          `json:"policies"`
		Metadata    map[string]string `json:"metadata"`
	} `json:"auth"`
	Request struct {
		ID            string `json:"id"`
		Operation     string `json:"operation"`
		Path          string `json:"path"`
		RemoteAddress string `json:"remote_address"`
	} `json:"request"`
	Error string `json:"error"`
}

// Query reads an audit log and returns one Record per matching request,
// in log order, joining each request entry with its response. It does not
// verify the log (use Verify). A final line without a newline (a log
// being written) is ignored; any other line that is not JSON is an error
// naming it.
func Query(r io.Reader, f Filter) ([]Record, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []Record
	byID := map[string]int{}
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break // a complete last line ends in '\n' and was read before EOF
		}
		if err != nil {
			return nil, fmt.Errorf("audit: read log: %w", err)
		}
		var q queryLine
		if err := json.Unmarshal(bytes.TrimSpace(line), &q); err != nil {
			return nil, fmt.Errorf("audit: line %d: not a JSON audit entry", n)
		}
		if q.Type != "request" && q.Type != "response" {
			continue
		}
		if !f.match(q.Request.Path, q.Request.Operation, q.Time) {
			continue
		}
		outcome := "ok"
		if q.Error != "" {
			outcome = "error: " + q.Error
		} else if q.Type == "request" {
			outcome = "no response"
		}
		if i, ok := byID[q.Request.ID]; ok && q.Request.ID != "" {
			if q.Type == "response" || q.Error != "" {
				out[i].Outcome = outcome
			}
			continue
		}
		rec := Record{
			Time: q.Time, RequestID: q.Request.ID, Operation: q.Request.Operation, Path: q.Request.Path,
			DisplayName: q.Auth.DisplayName, Accessor: q.Auth.Accessor, Policies: q.Auth.Policies,
			Metadata: q.Auth.Metadata, RemoteAddress: q.Request.RemoteAddress, Outcome: outcome,
		}
		if q.Request.ID != "" {
			byID[q.Request.ID] = len(out)
		}
		out = append(out, rec)
	}
	return out, nil
}
