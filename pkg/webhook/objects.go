package webhook

import (
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podSpecOf decodes raw as the object of gvk and returns its pod spec: the Pod's own, or the
// template's for a workload. ok is false for kinds pullgate does not check.
func podSpecOf(gvk metav1.GroupVersionKind, raw []byte) (spec *corev1.PodSpec, ok bool, err error) {
	decode := func(obj any) error {
		if err := json.Unmarshal(raw, obj); err != nil {
			return fmt.Errorf("decoding %s: %w", gvk.Kind, err)
		}
		return nil
	}
	switch gvk {
	case metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}:
		var o corev1.Pod
		return &o.Spec, true, decode(&o)
	case metav1.GroupVersionKind{Version: "v1", Kind: "ReplicationController"}:
		var o corev1.ReplicationController
		if err := decode(&o); err != nil {
			return nil, true, err
		}
		if o.Spec.Template == nil {
			return &corev1.PodSpec{}, true, nil
		}
		return &o.Spec.Template.Spec, true, nil
	case metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}:
		var o appsv1.Deployment
		return &o.Spec.Template.Spec, true, decode(&o)
	case metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}:
		var o appsv1.StatefulSet
		return &o.Spec.Template.Spec, true, decode(&o)
	case metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}:
		var o appsv1.DaemonSet
		return &o.Spec.Template.Spec, true, decode(&o)
	case metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}:
		var o appsv1.ReplicaSet
		return &o.Spec.Template.Spec, true, decode(&o)
	case metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}:
		var o batchv1.Job
		return &o.Spec.Template.Spec, true, decode(&o)
	case metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}:
		var o batchv1.CronJob
		return &o.Spec.JobTemplate.Spec.Template.Spec, true, decode(&o)
	}
	return nil, false, nil
}

// pullRelevantChange reports whether an update changed anything that decides whether the
// pods' pulls succeed: images, pull policies, pull secrets, the ServiceAccount or the node
// placement. Other updates (labels, replicas, resources) are admitted without a look-up.
func pullRelevantChange(old, cur *corev1.PodSpec) bool {
	// Exported fields: equality.Semantic compares only those.
	type pullView struct {
		Images             [][2]string
		PullSecrets        []corev1.LocalObjectReference
		ServiceAccountName string
		NodeSelector       map[string]string
		NodeAffinity       *corev1.NodeAffinity
	}
	view := func(s *corev1.PodSpec) pullView {
		v := pullView{
			PullSecrets:        s.ImagePullSecrets,
			ServiceAccountName: s.ServiceAccountName,
			NodeSelector:       s.NodeSelector,
		}
		for _, c := range s.InitContainers {
			v.Images = append(v.Images, [2]string{c.Image, string(c.ImagePullPolicy)})
		}
		for _, c := range s.Containers {
			v.Images = append(v.Images, [2]string{c.Image, string(c.ImagePullPolicy)})
		}
		if s.Affinity != nil {
			v.NodeAffinity = s.Affinity.NodeAffinity
		}
		return v
	}
	return !equality.Semantic.DeepEqual(view(old), view(cur))
}

// newEphemeralContainers returns the ephemeral containers of cur that old does not have: an
// update of the ephemeralcontainers subresource adds them, and only they will be pulled.
func newEphemeralContainers(old, cur *corev1.PodSpec) []corev1.EphemeralContainer {
	had := make(map[string]bool, len(old.EphemeralContainers))
	for _, c := range old.EphemeralContainers {
		had[c.Name] = true
	}
	var out []corev1.EphemeralContainer
	for _, c := range cur.EphemeralContainers {
		if !had[c.Name] {
			out = append(out, c)
		}
	}
	return out
}
