//go:build tools

// Package certmanager pins cert-manager's controller and cainjector, which test/install runs
// to issue pullgate's certificate and inject its CA for real. It is never compiled (build tag
// "tools"); it keeps `go mod tidy` from dropping the requirements of this module.
//
// A module of its own, like hack/tools: cert-manager's go.mod has a replace directive, so its
// commands cannot be built with `go install ...@version`, and its dependency graph (older
// Kubernetes libraries) must not touch pullgate's or the Kubernetes tools'.
//
// cert-manager v1.11.5 is the newest release whose cmd/controller and cmd/cainjector are part
// of the github.com/cert-manager/cert-manager module; from v1.12 on they are modules of their
// own that the Go module proxy does not serve. Its cert-manager.io/v1 API is the one the chart
// (and its tests, with the v1.21.2 API types) uses.
package certmanager

import (
	_ "github.com/cert-manager/cert-manager/cmd/cainjector"
	_ "github.com/cert-manager/cert-manager/cmd/controller"
)
