// Package cli is kubectl-pullgate's command line: the explain, check, audit and version
// commands, their flags (kubeconfig flags as every kubectl plugin has them, from cli-runtime's
// genericclioptions), and their output. It wires pullgate's engine — pkg/validate's checks,
// pkg/registrycache, pkg/pullsecrets, pkg/nodes, pkg/workload — as cmd/webhook does, and
// implements no check itself.
package cli
