package audit

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// DeviceConfig is how a device is declared: the body of PUT
// sys/audit/<name>, or an audit block of the server config.
type DeviceConfig struct {
	// Type is "file" or "socket".
	Type string
	// Description is free text shown by List.
	Description string
	// Options are the device's options; see the package documentation.
	// Unknown options are refused, and so is log_raw=true.
	Options map[string]string
	// Local is accepted and shown, as Vault's; Coffer has no replication
	// that would ignore it.
	Local bool
}

// Defaults of the device options.
const (
	DefaultTimeout      = 2 * time.Second
	DefaultWriteTimeout = 2 * time.Second
	DefaultQueueSize    = 1024
	DefaultFileMode     = 0o600
	// CheckpointInterval is the number of lines between two interval
	// checkpoints.
	CheckpointInterval = 1000
)

// options are a DeviceConfig's options, parsed and checked.
type options struct {
	timeout      time.Duration
	hmacAccessor bool
	queueSize    int

	// file
	filePath string // a path, "stdout" or "discard"
	mode     os.FileMode

	// socket
	address      string
	socketType   string
	writeTimeout time.Duration
}

var commonOptions = []string{"timeout", "hmac_accessor", "queue_size", "log_raw", "format", "elide_list_responses"}

// parseOptions checks cfg and returns its options. Errors are Invalid and
// name the option, never a value that could be a secret (options hold no
// secrets, but the rule costs nothing).
func parseOptions(cfg DeviceConfig) (options, error) {
	o := options{timeout: DefaultTimeout, hmacAccessor: true, queueSize: DefaultQueueSize, mode: DefaultFileMode, writeTimeout: DefaultWriteTimeout, socketType: "tcp"}
	var known []string
	switch cfg.Type {
	case "file":
		known = []string{"file_path", "path", "mode"}
	case "socket":
		known = []string{"address", "socket_type", "write_timeout"}
	case "":
		return o, logical.Errorf(logical.Invalid, "audit: missing audit device type")
	default:
		return o, logical.Errorf(logical.Invalid, "audit: unknown audit device type %q: use file or socket", cfg.Type)
	}
	for k, v := range cfg.Options {
		if !slices.Contains(known, k) && !slices.Contains(commonOptions, k) {
			return o, logical.Errorf(logical.Invalid, "audit: unknown option %q for a %s device", k, cfg.Type)
		}
		var err error
		switch k {
		case "timeout":
			o.timeout, err = positiveDuration(v)
		case "write_timeout":
			o.writeTimeout, err = positiveDuration(v)
		case "hmac_accessor":
			o.hmacAccessor, err = strconv.ParseBool(v)
		case "log_raw":
			var raw bool
			if raw, err = strconv.ParseBool(v); err == nil && raw {
				return o, logical.Errorf(logical.Invalid, "audit: log_raw is not supported: Coffer never writes values in clear")
			}
		case "format":
			if v != "json" && v != "" {
				return o, logical.Errorf(logical.Invalid, "audit: format %q is not supported: use json", v)
			}
		case "elide_list_responses":
			_, err = strconv.ParseBool(v)
		case "queue_size":
			o.queueSize, err = strconv.Atoi(v)
			if err == nil && (o.queueSize < 1 || o.queueSize > 1<<20) {
				err = fmt.Errorf("out of range")
			}
		case "file_path", "path":
			o.filePath = v
		case "mode":
			var m uint64
			m, err = strconv.ParseUint(v, 8, 32)
			if err == nil && m > 0o777 {
				err = fmt.Errorf("out of range")
			}
			o.mode = os.FileMode(m)
		case "address":
			o.address = v
		case "socket_type":
			if v != "tcp" && v != "unix" {
				return o, logical.Errorf(logical.Invalid, "audit: socket_type must be tcp or unix, not %q", v)
			}
			o.socketType = v
		}
		if err != nil {
			return o, logical.Errorf(logical.Invalid, "audit: option %q has an invalid value", k)
		}
	}
	switch cfg.Type {
	case "file":
		if o.filePath == "" {
			return o, logical.Errorf(logical.Invalid, "audit: file_path is required")
		}
		if o.filePath != "stdout" && o.filePath != "discard" && !strings.HasPrefix(o.filePath, "/") {
			return o, logical.Errorf(logical.Invalid, "audit: file_path must be absolute, stdout or discard")
		}
	case "socket":
		if o.address == "" {
			return o, logical.Errorf(logical.Invalid, "audit: address is required")
		}
	}
	return o, nil
}

func positiveDuration(s string) (time.Duration, error) {
	d, err := logical.ParseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("not positive")
	}
	return d, err
}
