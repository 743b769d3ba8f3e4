//go:build tools

// Package kyverno pins Kyverno's admission controller (cmd/kyverno), which the benchmark
// (test/bench -kyverno) runs side by side with pullgate. It is never compiled (build tag
// "tools"); it keeps `go mod tidy` from dropping the requirements of this module.
//
// A module of its own, like hack/certmanager: Kyverno's go.mod has a replace directive
// (k8s.io/pod-security-admission => github.com/kyverno/pod-security-admission), copied
// here, so its commands cannot be built with `go install ...@version`, and its dependency
// graph must not touch pullgate's. Built only on request: PULLGATE_TOOLS_KYVERNO=1
// hack/tools.sh, or `make kyverno`.
package kyverno

import (
	_ "github.com/kyverno/kyverno/cmd/kyverno"
)
