// Package install holds the tests of pullgate's install artifacts: the Helm chart
// (charts/pullgate), the kustomize manifests generated from it (deploy/) and the Dockerfile.
//
// The tests render the chart with the real helm for a matrix of values, decode every object
// strictly into its typed Kubernetes or cert-manager API type (an unknown or misspelt field
// fails), and check what breaks installs: a serving certificate that does not cover the
// Service or is not the Secret the webhook reads, webhook paths and ports that do not lead to
// the server, a namespaceSelector that lets pullgate gate its own namespace or kube-system,
// RBAC beyond what the webhook calls, a pod that is not locked down. They also check that
// `kubectl kustomize deploy/` describes the same objects as the chart's defaults.
//
// helm and kubectl come from HELM and KUBECTL, else hack/tools/bin (built by `make tools`),
// else PATH. Without them the tests that need them skip, except under CI=true, where they
// fail. Server-side checks (applying the render to an API server) are in the e2e suite.
package install
