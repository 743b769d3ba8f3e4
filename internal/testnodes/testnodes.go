// Package testnodes builds Ready nodes and the snapshots the checks read of them, for tests.
package testnodes

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullgate/pullgate/pkg/nodes"
	"github.com/pullgate/pullgate/pkg/validate"
)

// Option changes a node being built.
type Option func(*corev1.Node)

// Ready returns a Ready node named name with the os and arch labels, running containerd 2
// unless an option says otherwise.
func Ready(name, os, arch string, opts ...Option) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		corev1.LabelHostname:   name,
		corev1.LabelOSStable:   os,
		corev1.LabelArchStable: arch,
	}}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	n.Status.NodeInfo = corev1.NodeSystemInfo{OperatingSystem: os, Architecture: arch, ContainerRuntimeVersion: "containerd://2.1.4"}
	for _, o := range opts {
		o(n)
	}
	return n
}

// Runtime sets status.nodeInfo.containerRuntimeVersion ("containerd://1.7.27", "cri-o://1.31.0").
func Runtime(version string) Option {
	return func(n *corev1.Node) { n.Status.NodeInfo.ContainerRuntimeVersion = version }
}

// Label adds a label.
func Label(key, value string) Option { return func(n *corev1.Node) { n.Labels[key] = value } }

// Taint adds a taint.
func Taint(key, value string, effect corev1.TaintEffect) Option {
	return func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: value, Effect: effect})
	}
}

// Cordoned sets spec.unschedulable.
func Cordoned() Option { return func(n *corev1.Node) { n.Spec.Unschedulable = true } }

// Images adds one image to status.images with these names.
func Images(names ...string) Option {
	return func(n *corev1.Node) {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: names, SizeBytes: 1 << 20})
	}
}

// Snapshot returns the snapshot a Tracker that observed nodes hands the checks.
func Snapshot(ns ...*corev1.Node) *validate.Nodes {
	t := nodes.NewTracker(nodes.WithDebounce(0))
	for _, n := range ns {
		t.Observe(n)
	}
	return t.Get()
}

// Platforms returns a snapshot of one Ready containerd 2 node per platform, for tests that
// care only about os and arch.
func Platforms(ps ...validate.Platform) *validate.Nodes {
	var ns []*corev1.Node
	for _, p := range ps {
		ns = append(ns, Ready(p.OS+"-"+p.Architecture, p.OS, p.Architecture))
	}
	return Snapshot(ns...)
}
