// Command coffer-bench measures a real coffer server process under load
// (`make bench`): KV v2 reads and writes of 1 KiB values from 16
// concurrent clients, with ops/s and p50/p99 latency, and in the same run
// the ceiling — the same load against a trivial HTTP server (another
// process) that returns canned bytes of the same size, with no storage, no
// crypto and no policy — and Coffer's share of it. It also reports the
// server's resident memory when idle. With --vault-client it runs the read
// phase and the ceiling once more with the official Vault Go client, the
// client Vault load tools are built on.
//
// Everything runs on loopback; each phase is bounded in time.
package main

import (
	"bytes"
	"context"
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

	vault "github.com/hashicorp/vault/api"
)

func main() {
	var (
		bin      = flag.String("coffer", "bin/coffer", "coffer binary to measure")
		workers  = flag.Int("workers", 16, "concurrent clients")
		duration = flag.Duration("duration", 10*time.Second, "length of each phase")
		size     = flag.Int("value-size", 1024, "bytes per secret value")
		keys     = flag.Int("keys", 1000, "distinct secrets read")
		storage  = flag.String("storage", "bolt", "bolt (durable, fsync), inmem, or raft (three local nodes: writes on the active node, reads on a standby)")
		audit    = flag.Bool("audit", false, "enable one file audit device (to a file in the temp dir)")
		canned   = flag.String("serve-canned", "", "internal: serve canned bytes on this address")
		profile  = flag.String("cpuprofile", "", "write the server's CPU profile of one phase to this file")
		phase    = flag.String("cpuprofile-phase", "read", "the phase to profile: read or write")
		vaultCli = flag.Bool("vault-client", false, "also run the read phase and the ceiling with the official Vault Go client (github.com/hashicorp/vault/api), as Vault load tools do")
	)
	flag.Parse()
	if *canned != "" {
		serveCanned(*canned, *size)
		return
	}
	if err := run(*bin, *workers, *duration, *size, *keys, *storage, *audit, *profile, *phase, *vaultCli); err != nil {
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

// node is one coffer server process under measurement.
type node struct {
	cmd   *exec.Cmd
	base  string // http://host:port
	api   string // host:port
	pprof string // COFFER_PPROF_ADDR, "" when not profiling
}

func (n *node) stop() {
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Kill()
		n.cmd.Wait()
	}
}

// startNode writes cfg to dir/coffer.hcl and starts a server on it.
func startNode(bin, dir, api, cfg string, pprof bool) (*node, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "coffer.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	n := &node{base: "http://" + api, api: api}
	n.cmd = exec.Command(bin, "server", "--config", path)
	n.cmd.Stderr = os.Stderr
	if pprof {
		n.pprof = freeAddr()
		n.cmd.Env = append(os.Environ(), "COFFER_PPROF_ADDR="+n.pprof)
	}
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitUp(n.base + "/v1/sys/seal-status"); err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

// raftConfig is one node's configuration: raft storage with production
// timings (performance_multiplier = 1).
func raftConfig(dir, name, api, clusterAddr string) string {
	return fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = %q
  performance_multiplier = 1
}
listener "tcp" {
  address         = %q
  cluster_address = %q
  tls_disable     = true
}
api_addr     = "http://%s"
cluster_addr = "https://%s"
log_level    = "error"
audit_allowed_dirs = [%q]
`, filepath.Join(dir, "raft"), name, api, clusterAddr, api, clusterAddr, dir)
}

// startRaft starts three raft nodes on loopback: the first is initialized
// and unsealed (it bootstraps the cluster), the other two join it and are
// unsealed with its key; it returns once all three are voters and the
// standbys know the active node. nodes[0] is the active node.
func startRaft(c *http.Client, bin, dir string, pprof bool) (nodes []*node, token string, err error) {
	defer func() {
		if err != nil {
			for _, n := range nodes {
				n.stop()
			}
			nodes = nil
		}
	}()
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		ndir := filepath.Join(dir, name)
		api := freeAddr()
		n, err := startNode(bin, ndir, api, raftConfig(ndir, name, api, freeAddr()), pprof)
		if err != nil {
			return nodes, "", err
		}
		nodes = append(nodes, n)
	}
	active := nodes[0]
	token, key, err := initNode(c, active.base)
	if err != nil {
		return nodes, "", err
	}
	if err := waitUntil(30*time.Second, "node 1 active", func() bool {
		l, ok := leaderOf(c, active.base)
		return ok && l.IsSelf
	}); err != nil {
		return nodes, "", err
	}
	// Promote joined nodes after 1 s of good health instead of 10 s.
	if err := request(c, "POST", active.base+"/v1/sys/storage/raft/autopilot/configuration", token,
		[]byte(`{"server_stabilization_time":"1s","last_contact_threshold":"5s"}`)); err != nil {
		return nodes, "", err
	}
	for _, n := range nodes[1:] {
		body, _ := json.Marshal(map[string]string{"leader_api_addr": active.base})
		if err := request(c, "POST", n.base+"/v1/sys/storage/raft/join", "", body); err != nil {
			return nodes, "", fmt.Errorf("join: %w", err)
		}
		if err := unseal(c, n.base, key); err != nil {
			return nodes, "", err
		}
	}
	if err := waitUntil(60*time.Second, "three voters", func() bool { return voters(c, active.base, token) == 3 }); err != nil {
		return nodes, "", err
	}
	for _, n := range nodes[1:] {
		if err := waitUntil(30*time.Second, "standby knows the active node", func() bool {
			l, ok := leaderOf(c, n.base)
			return ok && !l.IsSelf && l.LeaderAddress == active.base
		}); err != nil {
			return nodes, "", err
		}
	}
	return nodes, token, nil
}

type leaderInfo struct {
	IsSelf        bool   `json:"is_self"`
	LeaderAddress string `json:"leader_address"`
	AppliedIndex  int64  `json:"raft_applied_index"`
}

// appliedIndex is the node's raft applied index (0 without raft).
func appliedIndex(c *http.Client, base string) int64 {
	l, _ := leaderOf(c, base)
	return l.AppliedIndex
}

func leaderOf(c *http.Client, base string) (leaderInfo, bool) {
	var l leaderInfo
	resp, err := c.Get(base + "/v1/sys/leader")
	if err != nil {
		return l, false
	}
	defer resp.Body.Close()
	return l, resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&l) == nil
}

// voters counts the voters in the raft configuration.
func voters(c *http.Client, base, token string) int {
	req, _ := http.NewRequest("GET", base+"/v1/sys/storage/raft/configuration", nil)
	req.Header.Set("X-Vault-Token", token)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var cfg struct {
		Data struct {
			Config struct {
				Servers []struct {
					Voter bool `json:"voter"`
				} `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&cfg) != nil {
		return 0
	}
	n := 0
	for _, s := range cfg.Data.Config.Servers {
		if s.Voter {
			n++
		}
	}
	return n
}

func waitUntil(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func run(bin string, workers int, d time.Duration, size, keys int, storage string, audit bool, profile, phase string, vaultCli bool) error {
	dir, err := os.MkdirTemp("", "coffer-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c := &http.Client{Timeout: 30 * time.Second}

	// writer takes the writes, reader the reads: the same server, or on a
	// raft cluster the active node and a standby.
	var writer, reader *node
	var nodes []*node
	var token string
	if storage == "raft" {
		ns, tok, err := startRaft(c, bin, dir, profile != "")
		if err != nil {
			return err
		}
		for _, n := range ns {
			defer n.stop()
		}
		nodes = ns
		writer, reader, token = nodes[0], nodes[1], tok
	} else {
		addr := freeAddr()
		cfg := fmt.Sprintf("storage %q {\n  path = %q\n}\nlistener \"tcp\" {\n  address = %q\n  tls_disable = true\n}\nlog_level = \"error\"\naudit_allowed_dirs = [%q]\n",
			storage, filepath.Join(dir, "coffer.db"), addr, dir)
		n, err := startNode(bin, dir, addr, cfg, profile != "")
		if err != nil {
			return err
		}
		defer n.stop()
		nodes = []*node{n}
		tok, _, err := initNode(c, n.base)
		if err != nil {
			return err
		}
		writer, reader, token = n, n, tok
	}
	base := writer.base
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
	idle := rssKB(writer.cmd.Process.Pid) // initialized, unsealed, nothing stored yet
	value := strings.Repeat("v", size)
	payload, _ := json.Marshal(map[string]any{"data": map[string]string{"value": value}})
	var lastIndex string
	for i := 0; i < keys; i++ {
		idx, err := write(c, fmt.Sprintf("%s/v1/secret/data/bench/k%d", base, i), token, payload)
		if err != nil {
			return err
		}
		lastIndex = idx
	}
	seeded := rssKB(writer.cmd.Process.Pid)
	if reader != writer {
		// The standby has every seeded secret once it has the last index.
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/secret/data/bench/k%d", reader.base, keys-1), nil)
		req.Header.Set("X-Vault-Token", token)
		req.Header.Set("X-Vault-Index", lastIndex)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	fmt.Printf("coffer-bench: %d workers, %v per phase, %d-byte values, storage %s, audit %v, GOMAXPROCS %d, %s/%s\n",
		workers, d, size, storage, audit, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	if reader != writer {
		fmt.Printf("raft: 3 voters on loopback; writes on the active node %s, reads on the standby %s\n", writer.api, reader.api)
	}

	profDone := make(chan error, 1)
	startProfile := func(p string, n *node) {
		if profile != "" && phase == p {
			go func() { profDone <- fetchProfile(n.pprof, d, profile) }()
		}
	}
	if profile == "" {
		profDone <- nil
	}
	startProfile("read", reader)
	reads := load(workers, d, func(c *http.Client, w, i int) error {
		return request(c, "GET", fmt.Sprintf("%s/v1/secret/data/bench/k%d", reader.base, (w*7919+i)%keys), token, nil)
	})
	startProfile("write", writer)
	idx0 := appliedIndex(c, writer.base)
	cpu0 := cpuTimes(nodes)
	writes := load(workers, d, func(c *http.Client, w, i int) error {
		return request(c, "POST", fmt.Sprintf("%s/v1/secret/data/bench/w%d-%d", base, w, i%200), token, payload)
	})
	entries := appliedIndex(c, writer.base) - idx0
	cpu1 := cpuTimes(nodes)
	if err := <-profDone; err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	transit := map[int]result{}
	if reader == writer {
		// Transit encrypt (issue: sops and the KMS plugin live on it).
		if err := request(c, "POST", base+"/v1/sys/mounts/transit", token, []byte(`{"type":"transit"}`)); err != nil {
			return err
		}
		if err := request(c, "POST", base+"/v1/transit/keys/bench", token, nil); err != nil {
			return err
		}
		for _, n := range []int{128, 4096} {
			body, _ := json.Marshal(map[string]string{"plaintext": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("p"), n))})
			transit[n] = load(workers, d, func(c *http.Client, w, i int) error {
				return request(c, "POST", base+"/v1/transit/encrypt/bench", token, body)
			})
		}
	}
	loaded := rssKB(writer.cmd.Process.Pid)

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
	if reader != writer {
		fmt.Printf("kv v2 read (standby)    %s  = %.0f%% of the ceiling\n", reads, 100*reads.rate()/ceiling.rate())
		fmt.Printf("kv v2 write (raft)      %s\n", writes)
		if writes.ops > 0 {
			fmt.Printf("raft log entries during the writes: %d (%.1f writes per entry)\n", entries, float64(writes.ops)/float64(max(entries, 1)))
			fmt.Printf("CPU during the writes, ms per write: active %.2f, standbys %.2f and %.2f\n",
				ms(cpu1[0]-cpu0[0])/float64(writes.ops), ms(cpu1[1]-cpu0[1])/float64(writes.ops), ms(cpu1[2]-cpu0[2])/float64(writes.ops))
		}
		fmt.Printf("active node RSS: idle %.1f MB, with %d secrets stored %.1f MB, after load %.1f MB\n", float64(idle)/1024, keys, float64(seeded)/1024, float64(loaded)/1024)
		return nil
	}
	var vreads, vceiling result
	if vaultCli {
		vreads = load(workers, d, vaultReads(reader.base, token, keys))
		vceiling = load(workers, d, vaultReads("http://"+caddr, token, keys))
	}
	fmt.Printf("kv v2 read              %s  = %.0f%% of the ceiling\n", reads, 100*reads.rate()/ceiling.rate())
	if vaultCli {
		fmt.Printf("ceiling, Vault Go client %s\n", vceiling)
		fmt.Printf("kv v2 read, Vault client %s  = %.0f%% of that ceiling\n", vreads, 100*vreads.rate()/vceiling.rate())
	}
	fmt.Printf("kv v2 write (%s)     %s\n", storage, writes)
	fmt.Printf("transit encrypt 128 B   %s  = %.0f%% of the ceiling\n", transit[128], 100*transit[128].rate()/ceiling.rate())
	fmt.Printf("transit encrypt 4 KiB   %s\n", transit[4096])
	fmt.Printf("server RSS: idle %.1f MB, with %d secrets stored %.1f MB, after load %.1f MB\n", float64(idle)/1024, keys, float64(seeded)/1024, float64(loaded)/1024)
	return nil
}

// write POSTs body and returns the answer's X-Vault-Index ("" without one).
func write(c *http.Client, url, token string, body []byte) (string, error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 300 {
		return "", fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return resp.Header.Get("X-Vault-Index"), nil
}

// cpuTimes returns each process's CPU time (user + system) so far.
func cpuTimes(nodes []*node) []time.Duration {
	out := make([]time.Duration, len(nodes))
	for i, n := range nodes {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): utime and
		// stime are the 12th and 13th, in clock ticks (100 per second).
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
		if len(f) > 12 {
			var ut, st int64
			fmt.Sscan(f[11], &ut)
			fmt.Sscan(f[12], &st)
			out[i] = time.Duration(ut+st) * 10 * time.Millisecond
		}
	}
	return out
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

// initNode initializes a server with one key share and returns the root
// token and the key.
func initNode(c *http.Client, base string) (token, key string, err error) {
	resp, err := c.Post(base+"/v1/sys/init", "application/json", strings.NewReader(`{"secret_shares":1,"secret_threshold":1}`))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var init struct {
		Keys      []string `json:"keys"`
		RootToken string   `json:"root_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&init); err != nil || len(init.Keys) == 0 {
		return "", "", fmt.Errorf("init failed: %v (%s)", err, resp.Status)
	}
	return init.RootToken, init.Keys[0], unseal(c, base, init.Keys[0])
}

// unseal submits the one key share.
func unseal(c *http.Client, base, key string) error {
	body, _ := json.Marshal(map[string]string{"key": key})
	return request(c, "POST", base+"/v1/sys/unseal", "", body)
}

// vaultReads returns a load that reads the bench's secrets at addr with the
// official Vault Go client, one client per worker, as Vault load tools do:
// the client's own work (building the request, decoding the envelope into
// a Secret) counts, for the server and for the ceiling alike.
func vaultReads(addr, token string, keys int) func(c *http.Client, w, i int) error {
	var mu sync.Mutex
	clients := map[int]*vault.KVv2{}
	return func(c *http.Client, w, i int) error {
		mu.Lock()
		kv := clients[w]
		if kv == nil {
			cfg := vault.DefaultConfig()
			cfg.Address, cfg.HttpClient, cfg.MaxRetries = addr, c, 0
			vc, err := vault.NewClient(cfg)
			if err != nil {
				mu.Unlock()
				return err
			}
			vc.SetToken(token)
			kv = vc.KVv2("secret")
			clients[w] = kv
		}
		mu.Unlock()
		_, err := kv.Get(context.Background(), fmt.Sprintf("bench/k%d", (w*7919+i)%keys))
		return err
	}
}
