package config

import "testing"

func TestParseRaftStorage(t *testing.T) {
	src := `
storage "raft" {
  path    = "/var/lib/coffer/raft"
  node_id = "node-2"
  performance_multiplier = 1
  retry_join {
    leader_api_addr     = "https://node-1:8200"
    leader_ca_cert_file = "/etc/coffer/ca.pem"
  }
  retry_join {
    leader_api_addr = "https://node-3:8200"
  }
}
listener "tcp" {
  address         = "127.0.0.1:8200"
  cluster_address = "127.0.0.1:8201"
  tls_disable     = true
}
api_addr     = "http://127.0.0.1:8200"
cluster_addr = "https://127.0.0.1:8201"
raft_snapshots {
  interval = "1h"
  path     = "/var/lib/coffer/snapshots"
  retain   = 24
}
`
	c, err := Parse("coffer.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Storage.Options["performance_multiplier"], "1"; got != want {
		t.Errorf("performance_multiplier = %q, want %q", got, want)
	}
	if got, want := len(c.Storage.Blocks), 2; got != want {
		t.Fatalf("got %d nested blocks, want %d", got, want)
	}
	if b := c.Storage.Blocks[0]; b.Type != "retry_join" || b.Attributes["leader_api_addr"] != "https://node-1:8200" || b.Attributes["leader_ca_cert_file"] != "/etc/coffer/ca.pem" {
		t.Errorf("first retry_join = %+v", b)
	}
	if c.Storage.Blocks[1].Attributes["leader_api_addr"] != "https://node-3:8200" {
		t.Errorf("second retry_join = %+v", c.Storage.Blocks[1])
	}
	if c.Listeners[0].ClusterAddress != "127.0.0.1:8201" || c.ClusterAddr != "https://127.0.0.1:8201" {
		t.Errorf("cluster addresses: listener %q, top-level %q", c.Listeners[0].ClusterAddress, c.ClusterAddr)
	}
	if c.RaftSnapshots == nil || c.RaftSnapshots.Attributes["retain"] != int64(24) || c.RaftSnapshots.Attributes["interval"] != "1h" {
		t.Errorf("raft_snapshots = %+v", c.RaftSnapshots)
	}
}

func TestParseRaftStorageBadInput(t *testing.T) {
	for name, src := range map[string]string{
		"a labelled nested block is refused": `storage "raft" { retry_join "x" { leader_api_addr = "a" } }
listener "tcp" { tls_disable = true }`,
		"two raft_snapshots blocks are refused": `storage "raft" {}
listener "tcp" { tls_disable = true }
raft_snapshots { interval = "1h" }
raft_snapshots { interval = "2h" }`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse("coffer.hcl", []byte(src)); err == nil {
				t.Errorf("Parse accepted %q", src)
			}
		})
	}
}
