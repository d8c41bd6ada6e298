// Package version holds talforge's version, stamped at build time with
// -ldflags "-X github.com/talforge/talforge/pkg/version.Version=v1.2.3".
package version

// Version is the talforge release.
var Version = "v0.1.0-dev"
