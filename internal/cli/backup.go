package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/spf13/cobra"
)

// progress counts bytes through Write and reports them on w: a redrawn
// bar on a terminal, a line per ten percent otherwise. total < 0: unknown.
type progress struct {
	w       io.Writer
	label   string
	tty     bool
	total   int64
	done    int64
	lastPct int
}

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	p.report()
	return len(b), nil
}

func (p *progress) report() {
	if p.total <= 0 {
		if p.tty {
			fmt.Fprintf(p.w, "\r%s: %s", p.label, mib(p.done))
		}
		return
	}
	pct := int(p.done * 100 / p.total)
	if pct > 100 {
		pct = 100
	}
	if p.tty {
		const width = 30
		fill := pct * width / 100
		bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
		if fill > 0 && fill < width {
			bar = strings.Repeat("=", fill-1) + ">" + strings.Repeat(" ", width-fill)
		}
		fmt.Fprintf(p.w, "\r%s [%s] %3d%% %s/%s", p.label, bar, pct, mib(p.done), mib(p.total))
		return
	}
	for p.lastPct+10 <= pct {
		p.lastPct += 10
		fmt.Fprintf(p.w, "%s: %d%%\n", p.label, p.lastPct)
	}
}

// finish ends the bar's line on a terminal.
func (p *progress) finish() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (a *app) newProgress(label string, total int64) *progress {
	return &progress{w: a.env.stderr, label: label, tty: isTerminal(a.env.stderr), total: total}
}

func (a *app) backupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Download a consistent copy of the storage file (still encrypted)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := a.download(cmd.Context(), "backup", "sys/storage/backup", args[0], "backup", "X-Coffer-Backup-Size",
				func(resp *http.Response, n int64, sum string) error {
					if resp.ContentLength >= 0 {
						if n != resp.ContentLength {
							return fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
						}
						return nil
					}
					// A streamed backup is complete only if the server said
					// so after the last byte.
					switch want := resp.Trailer.Get("X-Coffer-Backup-Sha256"); {
					case want == "":
						return fmt.Errorf("the server did not finish the backup (got %d bytes): see its log", n)
					case want != sum:
						return fmt.Errorf("the backup's checksum does not match what the server sent")
					}
					return nil
				})
			if err != nil {
				return err
			}
			a.success("Backup written to %s (%d bytes)", args[0], n)
			return nil
		},
	}
}

func (a *app) restoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the server's storage with a backup",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			size, err := a.upload(cmd.Context(), "restore", args[0], "sys/storage/restore", "restore")
			if err != nil {
				return err
			}
			a.success("Storage restored from %s (%d bytes)", args[0], size)
			return nil
		},
	}
}

// download writes the body of GET path to the file dst and returns its
// length. The body goes to a temporary file beside dst, which is fsynced
// and renamed over dst only once check accepts what arrived, so dst is
// never left half written. check gets the response, the byte count and
// the hex SHA-256 of the body. Progress is reported under label; when the
// body is streamed (no Content-Length), the header sizeHeader, if the
// server sent it, estimates its size. Errors of the request are returned
// as the client gives them; the others are wrapped with op.
func (a *app) download(ctx context.Context, op, path, dst, label, sizeHeader string, check func(resp *http.Response, n int64, sum string) error) (int64, error) {
	c, err := a.client()
	if err != nil {
		return 0, err
	}
	resp, err := c.Raw(ctx, http.MethodGet, path, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := api.CheckResponse(resp); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	size := resp.ContentLength
	if est, err := strconv.ParseInt(resp.Header.Get(sizeHeader), 10, 64); err == nil && size < 0 {
		size = est // an estimate: the bar may stop short of 100%
	}
	p := a.newProgress(label, size)
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, p, sum), resp.Body)
	p.finish()
	if err == nil {
		err = check(resp, n, hex.EncodeToString(sum.Sum(nil)))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	return n, nil
}

// upload POSTs the file src to path as a stream, reporting progress under
// label, and returns src's size. Errors opening src are wrapped with op;
// the request's are returned as the client gives them.
func (a *app) upload(ctx context.Context, op, src, path, label string) (int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	c, err := a.client()
	if err != nil {
		return 0, err
	}
	p := a.newProgress(label, fi.Size())
	err = c.RawJSON(ctx, http.MethodPost, path, api.Stream{Reader: io.TeeReader(f, p), Length: fi.Size()}, nil)
	p.finish()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
