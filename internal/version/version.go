// Package version holds the build's version, reported by sys/seal-status,
// sys/health and `coffer version`. Release builds set it with -ldflags.
package version

// Version is a semantic version (Vault clients parse it).
var Version = "0.1.0"
