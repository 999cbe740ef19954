package cli

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// raftCmd is `coffer operator raft`: Vault's list-peers, join,
// remove-peer and snapshot save|restore over sys/storage/raft.
func (a *app) raftCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "raft", Short: "Manage the raft cluster: peers, joins and snapshots"}
	snap := &cobra.Command{Use: "snapshot", Short: "Save or restore a raft snapshot"}
	snap.AddCommand(a.raftSnapshotSaveCmd(), a.raftSnapshotRestoreCmd())
	cmd.AddCommand(a.raftListPeersCmd(), a.raftJoinCmd(), a.raftRemovePeerCmd(), snap)
	return cmd
}

type raftConfiguration struct {
	Data struct {
		Config struct {
			Servers []struct {
				NodeID  string `json:"node_id"`
				Address string `json:"address"`
				Leader  bool   `json:"leader"`
				Voter   bool   `json:"voter"`
			} `json:"servers"`
			Index uint64 `json:"index"`
		} `json:"config"`
	} `json:"data"`
}

func (a *app) raftListPeersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list-peers",
		Short: "List the raft cluster's members",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var out raftConfiguration
			if err := c.RawJSON(cmd.Context(), http.MethodGet, "sys/storage/raft/configuration", nil, &out); err != nil {
				return err
			}
			if a.g.format == "json" {
				return printJSON(a.env.stdout, out)
			}
			tw := tabwriter.NewWriter(a.env.stdout, 0, 4, 4, ' ', 0)
			fmt.Fprintln(tw, "Node\tAddress\tState\tVoter")
			fmt.Fprintln(tw, "----\t-------\t-----\t-----")
			for _, s := range out.Data.Config.Servers {
				state := "follower"
				if s.Leader {
					state = "leader"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", s.NodeID, s.Address, state, s.Voter)
			}
			return tw.Flush()
		},
	}
}

func (a *app) raftJoinCmd() *cobra.Command {
	var caFile string
	var nonVoter bool
	cmd := &cobra.Command{
		Use:   "join LEADER_API_ADDR",
		Short: "Join this (uninitialized) server to a cluster; then unseal it with the cluster's keys",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"leader_api_addr": args[0], "non_voter": nonVoter}
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("join: %w", err)
				}
				body["leader_ca_cert"] = string(pem)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var out struct {
				Joined bool `json:"joined"`
			}
			if err := c.RawJSON(cmd.Context(), http.MethodPost, "sys/storage/raft/join", body, &out); err != nil {
				return err
			}
			if a.g.format == "json" {
				return printJSON(a.env.stdout, out)
			}
			printRows(a.env.stdout, []row{{"Joined", strconv.FormatBool(out.Joined)}})
			return nil
		},
	}
	cmd.Flags().StringVar(&caFile, "leader-ca-cert", "", "PEM file of the CA that signed the leader's API certificate")
	cmd.Flags().BoolVar(&nonVoter, "non-voter", false, "stay a non-voting member")
	return cmd
}

func (a *app) raftRemovePeerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove-peer NODE_ID",
		Short: "Remove a node from the raft cluster",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RawJSON(cmd.Context(), http.MethodPost, "sys/storage/raft/remove-peer", map[string]string{"server_id": args[0]}, nil); err != nil {
				return err
			}
			a.success("Peer removed successfully!")
			return nil
		},
	}
}

func (a *app) raftSnapshotSaveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Save a raft snapshot of the cluster's data (still encrypted)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := a.download(cmd.Context(), "snapshot save", "sys/storage/raft/snapshot", args[0], "snapshot", "X-Coffer-Snapshot-Size",
				func(_ *http.Response, n int64, _ string) error {
					if n == 0 {
						return fmt.Errorf("the server sent an empty snapshot")
					}
					return nil
				})
			if err != nil {
				return err
			}
			a.success("Snapshot written to %s (%d bytes)", args[0], n)
			return nil
		},
	}
}

func (a *app) raftSnapshotRestoreCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a raft snapshot on the whole cluster; the active node seals and is unsealed with the snapshot's keys",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "sys/storage/raft/snapshot"
			if force {
				path = "sys/storage/raft/snapshot-force"
			}
			size, err := a.upload(cmd.Context(), "snapshot restore", args[0], path, "restore")
			if err != nil {
				return err
			}
			a.success("Snapshot restored from %s (%d bytes); unseal the active node with the snapshot's keys", args[0], size)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "use snapshot-force (a snapshot from another cluster)")
	return cmd
}
