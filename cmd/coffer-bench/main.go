// Command coffer-bench measures a real coffer server process under load
// (`make bench`): KV v2 reads and writes of 1 KiB values from 16
// concurrent clients, with ops/s and p50/p99 latency, and in the same run
// the ceiling — the same load against a trivial HTTP server (another
// process) that returns canned bytes of the same size, with no storage, no
// crypto and no policy — and Coffer's share of it. It also reports the
// server's resident memory when idle.
//
// Everything runs on loopback; each phase is bounded in time.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	var (
		bin      = flag.String("coffer", "bin/coffer", "coffer binary to measure")
		workers  = flag.Int("workers", 16, "concurrent clients")
		duration = flag.Duration("duration", 10*time.Second, "length of each phase")
		size     = flag.Int("value-size", 1024, "bytes per secret value")
		keys     = flag.Int("keys", 1000, "distinct secrets read")
		storage  = flag.String("storage", "bolt", "bolt (durable, fsync) or inmem")
		audit    = flag.Bool("audit", false, "enable one file audit device (to a file in the temp dir)")
		canned   = flag.String("serve-canned", "", "internal: serve canned bytes on this address")
		profile  = flag.String("cpuprofile", "", "write the server's CPU profile of one phase to this file")
		phase    = flag.String("cpuprofile-phase", "read", "the phase to profile: read or write")
	)
	flag.Parse()
	if *canned != "" {
		serveCanned(*canned, *size)
		return
	}
	if err := run(*bin, *workers, *duration, *size, *keys, *storage, *audit, *profile, *phase); err != nil {
		fmt.Fprintln(os.Stderr, "coffer-bench:", err)
		os.Exit(1)
	}
}

// cannedBody is what a KV v2 read of a value of the given size returns.
func cannedBody(size int) []byte {
	body, _ := json.Marshal(map[string]any{
		"request_id": "00000000-0000-0000-0000-000000000000", "lease_id": "", "renewable": false, "lease_duration": 0,
		"data": map[string]any{
			"data":     map[string]string{"value": strings.Repeat("x", size)},
			"metadata": map[string]any{"created_time": time.Now().UTC().Format(time.RFC3339Nano), "custom_metadata": nil, "deletion_time": "", "destroyed": false, "version": 1},
		},
		"wrap_info": nil, "warnings": nil, "auth": nil,
	})
	return append(body, '\n')
}

func serveCanned(addr string, size int) {
	body := cannedBody(size)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	if err := http.ListenAndServe(addr, h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type result struct {
	ops      int64
	errs     int64
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r result) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func (r result) String() string {
	return fmt.Sprintf("%9.0f ops/s  p50 %6.2f ms  p99 %6.2f ms  (%d ops, %d errors)",
		r.rate(), ms(r.p50), ms(r.p99), r.ops, r.errs)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// load runs workers goroutines calling do until d has passed.
func load(workers int, d time.Duration, do func(c *http.Client, w, i int) error) result {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	var (
		ops, errs atomic.Int64
		mu        sync.Mutex
		lat       []time.Duration
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<14)
			for i := 0; time.Now().Before(deadline); i++ {
				t0 := time.Now()
				if err := do(c, w, i); err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
				ops.Add(1)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := result{ops: ops.Load(), errs: errs.Load(), elapsed: time.Since(start)}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if n := len(lat); n > 0 {
		r.p50 = lat[n/2]
		r.p99 = lat[n*99/100]
	}
	return r
}

func request(c *http.Client, method, url, token string, body []byte) error {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return nil
}

func waitUp(url string) error {
	for i := 0; i < 300; i++ {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("server did not start")
}

func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var n int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "VmRSS:"), "kB")), &n)
			return n
		}
	}
	return 0
}

func run(bin string, workers int, d time.Duration, size, keys int, storage string, audit bool, profile, phase string) error {
	dir, err := os.MkdirTemp("", "coffer-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr := freeAddr()
	base := "http://" + addr
	cfg := fmt.Sprintf("storage %q {\n  path = %q\n}\nlistener \"tcp\" {\n  address = %q\n  tls_disable = true\n}\nlog_level = \"error\"\naudit_allowed_dirs = [%q]\n",
		storage, filepath.Join(dir, "coffer.db"), addr, dir)
	if err := os.WriteFile(filepath.Join(dir, "coffer.hcl"), []byte(cfg), 0o600); err != nil {
		return err
	}
	srv := exec.Command(bin, "server", "--config", filepath.Join(dir, "coffer.hcl"))
	srv.Stderr = os.Stderr
	pprofAddr := ""
	if profile != "" {
		pprofAddr = freeAddr()
		srv.Env = append(os.Environ(), "COFFER_PPROF_ADDR="+pprofAddr)
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	if err := waitUp(base + "/v1/sys/seal-status"); err != nil {
		return err
	}
	c := &http.Client{Timeout: 30 * time.Second}
	token, err := initServer(c, base)
	if err != nil {
		return err
	}
	if err := request(c, "POST", base+"/v1/sys/mounts/secret", token, []byte(`{"type":"kv","options":{"version":"2"}}`)); err != nil {
		return err
	}
	if audit {
		body := fmt.Sprintf(`{"type":"file","options":{"file_path":%q}}`, filepath.Join(dir, "audit.log"))
		if err := request(c, "PUT", base+"/v1/sys/audit/file", token, []byte(body)); err != nil {
			return fmt.Errorf("enable audit device: %w", err)
		}
	}
	time.Sleep(2 * time.Second)
	idle := rssKB(srv.Process.Pid) // initialized, unsealed, nothing stored yet
	value := strings.Repeat("v", size)
	payload, _ := json.Marshal(map[string]any{"data": map[string]string{"value": value}})
	for i := 0; i < keys; i++ {
		if err := request(c, "POST", fmt.Sprintf("%s/v1/secret/data/bench/k%d", base, i), token, payload); err != nil {
			return err
		}
	}
	seeded := rssKB(srv.Process.Pid)

	fmt.Printf("coffer-bench: %d workers, %v per phase, %d-byte values, storage %s, audit %v, GOMAXPROCS %d, %s/%s\n",
		workers, d, size, storage, audit, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)

	profDone := make(chan error, 1)
	startProfile := func(p string) {
		if profile != "" && phase == p {
			go func() { profDone <- fetchProfile(pprofAddr, d, profile) }()
		}
	}
	if profile == "" {
		profDone <- nil
	}
	startProfile("read")
	reads := load(workers, d, func(c *http.Client, w, i int) error {
		return request(c, "GET", fmt.Sprintf("%s/v1/secret/data/bench/k%d", base, (w*7919+i)%keys), token, nil)
	})
	startProfile("write")
	writes := load(workers, d, func(c *http.Client, w, i int) error {
		return request(c, "POST", fmt.Sprintf("%s/v1/secret/data/bench/w%d-%d", base, w, i%200), token, payload)
	})
	if err := <-profDone; err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	// Transit encrypt (issue: sops and the KMS plugin live on it).
	if err := request(c, "POST", base+"/v1/sys/mounts/transit", token, []byte(`{"type":"transit"}`)); err != nil {
		return err
	}
	if err := request(c, "POST", base+"/v1/transit/keys/bench", token, nil); err != nil {
		return err
	}
	transit := map[int]result{}
	for _, n := range []int{128, 4096} {
		body, _ := json.Marshal(map[string]string{"plaintext": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("p"), n))})
		transit[n] = load(workers, d, func(c *http.Client, w, i int) error {
			return request(c, "POST", base+"/v1/transit/encrypt/bench", token, body)
		})
	}
	loaded := rssKB(srv.Process.Pid)

	// The ceiling: the same read load against canned bytes, in its own
	// process, like the server.
	caddr := freeAddr()
	self, _ := os.Executable()
	canned := exec.Command(self, "--serve-canned", caddr, fmt.Sprintf("--value-size=%d", size))
	canned.Stderr = os.Stderr
	if err := canned.Start(); err != nil {
		return err
	}
	defer func() { canned.Process.Kill(); canned.Wait() }()
	if err := waitUp("http://" + caddr + "/"); err != nil {
		return err
	}
	ceiling := load(workers, d, func(c *http.Client, w, i int) error {
		return request(c, "GET", fmt.Sprintf("http://%s/v1/secret/data/bench/k%d", caddr, i%keys), token, nil)
	})

	fmt.Printf("ceiling (canned bytes)  %s\n", ceiling)
	fmt.Printf("kv v2 read              %s  = %.0f%% of the ceiling\n", reads, 100*reads.rate()/ceiling.rate())
	fmt.Printf("kv v2 write (%s)     %s\n", storage, writes)
	fmt.Printf("transit encrypt 128 B   %s  = %.0f%% of the ceiling\n", transit[128], 100*transit[128].rate()/ceiling.rate())
	fmt.Printf("transit encrypt 4 KiB   %s\n", transit[4096])
	fmt.Printf("server RSS: idle %.1f MB, with %d secrets stored %.1f MB, after load %.1f MB\n", float64(idle)/1024, keys, float64(seeded)/1024, float64(loaded)/1024)
	return nil
}

// fetchProfile saves the server's CPU profile over the next d.
func fetchProfile(addr string, d time.Duration, path string) error {
	secs := int(d.Seconds()) - 1
	if secs < 1 {
		secs = 1
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func initServer(c *http.Client, base string) (string, error) {
	resp, err := c.Post(base+"/v1/sys/init", "application/json", strings.NewReader(`{"secret_shares":1,"secret_threshold":1}`))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var init struct {
		Keys      []string `json:"keys"`
		RootToken string   `json:"root_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&init); err != nil || len(init.Keys) == 0 {
		return "", fmt.Errorf("init failed: %v (%s)", err, resp.Status)
	}
	body, _ := json.Marshal(map[string]string{"key": init.Keys[0]})
	r2, err := c.Post(base+"/v1/sys/unseal", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	r2.Body.Close()
	return init.RootToken, nil
}
