// Package nodes keeps what the checks need to know of the cluster's Ready nodes, fed by a
// Node informer: each node's labels, taints, cordon, platform (os, architecture, Windows
// build), container runtime and the images it lists in status.images. It hands the
// admissions snapshots of them, rebuilt when something they read changes (not on the
// kubelet's heartbeats), with alike nodes grouped, so that a check compares a pod with a
// few kinds of node rather than thousands of nodes, without listing nodes per admission.
package nodes
