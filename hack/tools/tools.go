//go:build tools

// Package tools pins the main packages that hack/tools.sh builds into
// hack/tools/bin. It is never compiled (build tag "tools"); it only keeps
// `go mod tidy` from dropping the requirements of this tools module.
//
// This is a separate module from github.com/pullgate/pullgate so that the
// control-plane binaries are built against exactly the dependency graph of
// k8s.io/kubernetes, not against pullgate's own dependencies.
//
// go.mod/go.sum here are generated: run `hack/tools.sh update-gomod`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
