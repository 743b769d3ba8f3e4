// Package nodes keeps the os/arch pairs of the cluster's Ready nodes, fed by a Node informer,
// so the platform check compares images with the machines pods can actually land on without
// listing nodes on every admission.
package nodes
