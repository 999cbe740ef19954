//go:build !coffer_server_only

package main

import (
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/coffer-dev/coffer/internal/agent"
	"github.com/coffer-dev/coffer/internal/k8s/csi"
	"github.com/coffer-dev/coffer/internal/k8s/injector"
	"github.com/coffer-dev/coffer/internal/k8s/kms"
	"github.com/coffer-dev/coffer/internal/k8s/operator"
	"github.com/coffer-dev/coffer/internal/version"
)

// The Kubernetes-side roles of the one binary. Each is an ordinary API
// client of a Coffer server. A build with -tags coffer_server_only leaves
// them out (k8s_none.go): the server alone, without controller-runtime's
// and grpc's packages in the process (docs/performance.md, Memory).

func k8sCommands() []*cobra.Command {
	return []*cobra.Command{agentCmd(), injectorCmd(), csiCmd(), kmsCmd(), controllerCmd()}
}

func logger(cmd *cobra.Command) *slog.Logger {
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func agentCmd() *cobra.Command {
	var opts agent.Options
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Log in, render secrets into files, keep them fresh (Vault Agent's config shape)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Logger = logger(cmd)
			return agent.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.ConfigPath, "config", "", "agent HCL config file (default: $COFFER_AGENT_CONFIG)")
	f.BoolVar(&opts.Once, "once", false, "render every template once and exit (init containers)")
	f.StringVar(&opts.SignalPIDFile, "signal-pid-file", "", "file with the pid of a process to send SIGHUP after a re-render")
	f.StringVar(&opts.HealthAddr, "health-addr", "", "serve /agent/v1/health on this address")
	return cmd
}

func injectorCmd() *cobra.Command {
	var opts injector.Options
	cmd := &cobra.Command{
		Use:   "injector",
		Short: "Mutating admission webhook that injects coffer agent into annotated Pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Logger = logger(cmd)
			return injector.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", ":8443", "address to serve /mutate on")
	f.StringVar(&opts.TLSCertFile, "tls-cert-file", "", "serving certificate (reloaded when it changes)")
	f.StringVar(&opts.TLSKeyFile, "tls-key-file", "", "serving key (reloaded when it changes)")
	f.StringVar(&opts.Config.AgentImage, "agent-image", "ghcr.io/coffer-dev/coffer:"+version.Version, "image of the injected agent")
	f.StringVar(&opts.Config.Address, "coffer-addr", "https://coffer.coffer.svc:8200", "Coffer server the agents talk to")
	f.StringVar(&opts.Config.CACert, "ca-cert", "", "CA file inside the agent's Pod for the server's certificate")
	return cmd
}

func csiCmd() *cobra.Command {
	var opts csi.Options
	cmd := &cobra.Command{
		Use:   "csi-provider",
		Short: "Secrets Store CSI Driver provider",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Logger = logger(cmd)
			return csi.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Endpoint, "endpoint", "unix:///etc/kubernetes/secrets-store-csi-providers/coffer.sock", "provider socket")
	f.StringVar(&opts.Address, "coffer-addr", "https://coffer.coffer.svc:8200", "Coffer server when a SecretProviderClass names none")
	f.StringVar(&opts.CACert, "ca-cert", "", "PEM file of CAs for the server")
	return cmd
}

func kmsCmd() *cobra.Command {
	var opts kms.Options
	cmd := &cobra.Command{
		Use:   "kms-plugin",
		Short: "Kubernetes KMS v2 plugin: etcd encryption with a Coffer transit key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Logger = logger(cmd)
			return kms.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", kms.DefaultListen, "unix socket the API server calls")
	f.StringVar(&opts.KeyPath, "key", kms.DefaultKeyPath, "transit key, <mount>/keys/<name>")
	f.StringVar(&opts.Address, "address", "", "Coffer address (default $COFFER_ADDR, $VAULT_ADDR)")
	f.StringVar(&opts.Token, "token", "", "token (default $COFFER_TOKEN, $VAULT_TOKEN)")
	f.StringVar(&opts.TokenFile, "token-file", "", "file holding the token, re-read when refused")
	f.StringVar(&opts.AppRole.RoleIDFile, "approle-role-id-file", "", "AppRole role_id file")
	f.StringVar(&opts.AppRole.SecretIDFile, "approle-secret-id-file", "", "AppRole secret_id file")
	f.StringVar(&opts.AppRole.MountPath, "approle-mount", "approle", "AppRole auth mount")
	f.StringVar(&opts.CACert, "ca-cert", "", "PEM file of CAs for Coffer (default $COFFER_CACERT)")
	f.IntVar(&opts.CacheSize, "cache-size", 0, "in-memory seed cache entries (0: 1024)")
	f.DurationVar(&opts.CacheTTL, "cache-ttl", 5*time.Minute, "in-memory seed cache lifetime")
	return cmd
}

// controllerCmd is the operator: CofferSecret → native Secrets, pushed on
// change. (`coffer operator` is Vault's operator command group.)
func controllerCmd() *cobra.Command {
	var opts operator.Options
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the Kubernetes operator: sync CofferSecrets into native Secrets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Logger = logger(cmd)
			return operator.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, in-cluster, ~/.kube/config)")
	f.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "Prometheus metrics address; 0 turns it off")
	f.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "/healthz and /readyz address; 0 turns it off")
	f.BoolVar(&opts.LeaderElection, "leader-elect", false, "run only one active replica")
	f.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader Lease (default: the pod's)")
	f.StringVar(&opts.LeaderElectionID, "leader-election-id", "coffer-operator.coffer.dev", "name of the leader Lease")
	return cmd
}
