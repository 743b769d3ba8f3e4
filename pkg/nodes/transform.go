package nodes

import (
	corev1 "k8s.io/api/core/v1"
)

// Transform is the Node informer's transform (cache.ByObject.Transform): it keeps of each
// Node only what recordOf reads (name, labels, taints, cordon, the Ready condition's status,
// the node's OS, architecture and runtime, and its images' names), so that the informer's
// store does not hold the rest of every node: annotations, managed fields, capacity,
// addresses, other conditions and their messages, attached volumes. At 1,000 nodes as a
// kubelet reports them, Node status was half of pullgate's heap (BENCHMARKS.md, scale).
//
// The background re-check's node handler (pkg/recheck NotifyNode) reads a subset of the
// same: Ready, OS and architecture, labels, taints. Code that needs more of a Node must
// widen this first (TestTransformKeepsWhatTheTrackerReads compares recordOf on both).
func Transform(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	kept := &corev1.Node{TypeMeta: n.TypeMeta}
	kept.Name, kept.UID, kept.ResourceVersion, kept.Generation = n.Name, n.UID, n.ResourceVersion, n.Generation
	kept.Labels = n.Labels
	kept.DeletionTimestamp = n.DeletionTimestamp
	kept.Spec.Taints, kept.Spec.Unschedulable = n.Spec.Taints, n.Spec.Unschedulable
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			kept.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	info := n.Status.NodeInfo
	kept.Status.NodeInfo = corev1.NodeSystemInfo{OperatingSystem: info.OperatingSystem, Architecture: info.Architecture,
		ContainerRuntimeVersion: info.ContainerRuntimeVersion}
	if len(n.Status.Images) > 0 {
		// The count matters too (ImagesTruncated), so every entry stays, with its names.
		kept.Status.Images = make([]corev1.ContainerImage, len(n.Status.Images))
		for i, img := range n.Status.Images {
			kept.Status.Images[i] = corev1.ContainerImage{Names: img.Names}
		}
	}
	return kept, nil
}
