// Package validate decides, before a pod exists, whether the kubelet's pull of each of its
// images will succeed, and explains every way it will not as a Finding with a stable reason
// code, a message that names the cause and a fix.
//
// The checks are pure: they take a pod spec, the pod's pull credentials, a snapshot of the
// cluster's Ready nodes (Nodes) and a Registry to ask, and return findings. They never
// construct clients, speak HTTP or decode admission requests, so they can be tested and
// reused without a webhook around them (depcheck_test.go guards that).
//
// Which nodes a pod may run on is decided with the scheduler's own helpers
// (k8s.io/component-helpers). How a node's runtime chooses from an index is containerd's
// (github.com/containerd/platforms) or CRI-O's: containers/image's choice is written here
// by hand (crioChoice), because its platform code is internal to containers/image and its
// public ChooseInstance would bring the library and its dependencies in for a table and a
// loop. The DaemonSet controller's tolerations are copied for the same reason:
// k8s.io/kubernetes is not a library.
package validate
