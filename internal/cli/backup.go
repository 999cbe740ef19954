package cli

import (
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
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Raw(cmd.Context(), http.MethodGet, "sys/storage/backup", nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if err := api.CheckResponse(resp); err != nil {
				return err
			}
			dst := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			defer os.Remove(tmp.Name()) // after the rename, a no-op
			size := resp.ContentLength
			if size < 0 {
				// Coffer streams the backup; its size is an estimate.
				size, _ = strconv.ParseInt(resp.Header.Get("X-Coffer-Backup-Size"), 10, 64)
			}
			p := a.newProgress("backup", size)
			sum := sha256.New()
			n, err := io.Copy(io.MultiWriter(tmp, p, sum), resp.Body)
			p.finish()
			if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
				err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
			}
			if want := resp.Trailer.Get("X-Coffer-Backup-Sha256"); err == nil && resp.ContentLength < 0 {
				// A streamed backup is complete only if the server said so
				// after the last byte.
				if want == "" {
					err = fmt.Errorf("the server did not finish the backup (got %d bytes): see its log", n)
				} else if want != hex.EncodeToString(sum.Sum(nil)) {
					err = fmt.Errorf("the backup's checksum does not match what the server sent")
				}
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
				return fmt.Errorf("backup: %w", err)
			}
			a.success("Backup written to %s (%d bytes)", dst, n)
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
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p := a.newProgress("restore", fi.Size())
			body := api.Stream{Reader: io.TeeReader(f, p), Length: fi.Size()}
			err = c.RawJSON(cmd.Context(), http.MethodPost, "sys/storage/restore", body, nil)
			p.finish()
			if err != nil {
				return err
			}
			a.success("Storage restored from %s (%d bytes)", args[0], fi.Size())
			return nil
		},
	}
}
