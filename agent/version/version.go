// Package version holds the build's version, set by the Makefile through -ldflags.
package version

// Version is the release (git describe) the binaries were built from.
var Version = "dev"
