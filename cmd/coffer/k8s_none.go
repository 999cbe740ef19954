//go:build coffer_server_only

package main

import "github.com/spf13/cobra"

// k8sCommands is empty in a server-only build (-tags coffer_server_only);
// see k8s.go.
func k8sCommands() []*cobra.Command { return nil }
