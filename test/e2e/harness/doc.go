// Package harness starts everything pullgate's end-to-end tests and demo run against, all
// real and all on loopback: kube-apiserver and etcd (controller-runtime envtest, binaries
// built by `make tools`), a public registry (go-containerregistry's pkg/registry), a private
// one (Debian's docker-registry with htpasswd auth), registries that misbehave, Node objects
// for amd64 and arm64, the pullgate binary built from cmd/webhook, and the real kubectl.
package harness
