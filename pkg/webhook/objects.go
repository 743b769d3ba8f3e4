package webhook

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podSpecOf decodes raw as the object of gvk and returns its pod spec: the Pod's own, or the
// template's for a workload, holding only what decides whether its pulls succeed. ok is
// false for kinds pullgate does not check.
func podSpecOf(gvk metav1.GroupVersionKind, raw []byte) (spec *corev1.PodSpec, ok bool, err error) {
	path := specPath(gvk)
	if path == nil {
		return nil, false, nil
	}
	p, err := scanPullSpec(raw, path)
	if err != nil {
		return nil, true, fmt.Errorf("decoding %s: %w", gvk.Kind, err)
	}
	return p.podSpec(), true, nil
}

// Where the pod spec is in an object: a Pod's own, a workload's template, a CronJob's job
// template's template.
var (
	podSpecPath      = []string{"spec"}
	templateSpecPath = []string{"spec", "template", "spec"}
	cronJobSpecPath  = []string{"spec", "jobTemplate", "spec", "template", "spec"}
)

// specPath is where the pod spec is in an object of gvk; nil for kinds pullgate does not
// check.
func specPath(gvk metav1.GroupVersionKind) []string {
	switch gvk {
	case metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}:
		return podSpecPath
	case metav1.GroupVersionKind{Version: "v1", Kind: "ReplicationController"},
		metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"},
		metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"},
		metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"},
		metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}:
		return templateSpecPath
	case metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}:
		return cronJobSpecPath
	}
	return nil
}

// pullSpec is the part of a pod spec that decides whether its pulls succeed. Reading only
// it (scanPullSpec), instead of decoding a whole Pod or workload, spares every admission the
// reflection over everything else a pod carries (env, volumes, probes, resources): that was
// a third of an admission's CPU time with a warm cache.
type pullSpec struct {
	InitContainers      []pullContainer               `json:"initContainers"`
	Containers          []pullContainer               `json:"containers"`
	EphemeralContainers []pullContainer               `json:"ephemeralContainers"`
	ImagePullSecrets    []corev1.LocalObjectReference `json:"imagePullSecrets"`
	ServiceAccountName  string                        `json:"serviceAccountName"`
	NodeSelector        map[string]string             `json:"nodeSelector"`
	Affinity            *struct {
		NodeAffinity *corev1.NodeAffinity `json:"nodeAffinity"`
	} `json:"affinity"`
	// NodeName, Tolerations and HostNetwork decide, with the selectors, which nodes the
	// pod may run on (HostNetwork: the DaemonSet controller tolerates
	// network-unavailable for host-network pods).
	NodeName    string              `json:"nodeName"`
	Tolerations []corev1.Toleration `json:"tolerations"`
	HostNetwork bool                `json:"hostNetwork"`
}

type pullContainer struct {
	Name            string            `json:"name"`
	Image           string            `json:"image"`
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy"`
}

func (p *pullSpec) podSpec() *corev1.PodSpec {
	spec := &corev1.PodSpec{
		ImagePullSecrets:   p.ImagePullSecrets,
		ServiceAccountName: p.ServiceAccountName,
		NodeSelector:       p.NodeSelector,
		NodeName:           p.NodeName,
		Tolerations:        p.Tolerations,
		HostNetwork:        p.HostNetwork,
	}
	if p.Affinity != nil && p.Affinity.NodeAffinity != nil {
		spec.Affinity = &corev1.Affinity{NodeAffinity: p.Affinity.NodeAffinity}
	}
	// corev1.Container is over a kilobyte: size each slice once instead of growing it.
	spec.InitContainers = containersOf(p.InitContainers)
	spec.Containers = containersOf(p.Containers)
	if len(p.EphemeralContainers) > 0 {
		spec.EphemeralContainers = make([]corev1.EphemeralContainer, len(p.EphemeralContainers))
		for i, c := range p.EphemeralContainers {
			spec.EphemeralContainers[i].EphemeralContainerCommon = corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image, ImagePullPolicy: c.ImagePullPolicy}
		}
	}
	return spec
}

func containersOf(cs []pullContainer) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image, ImagePullPolicy: c.ImagePullPolicy}
	}
	return out
}

// pullRelevantChange reports whether an update changed anything that decides whether the
// pods' pulls succeed: images, pull policies, pull secrets, the ServiceAccount or the node
// placement (selectors, node name, tolerations, host network). Other updates (labels,
// replicas, resources) are admitted without a look-up.
func pullRelevantChange(old, cur *corev1.PodSpec) bool {
	// Exported fields: equality.Semantic compares only those.
	type pullView struct {
		Images             [][2]string
		PullSecrets        []corev1.LocalObjectReference
		ServiceAccountName string
		NodeSelector       map[string]string
		NodeAffinity       *corev1.NodeAffinity
		NodeName           string
		Tolerations        []corev1.Toleration
		HostNetwork        bool
	}
	view := func(s *corev1.PodSpec) pullView {
		v := pullView{
			PullSecrets:        s.ImagePullSecrets,
			ServiceAccountName: s.ServiceAccountName,
			NodeSelector:       s.NodeSelector,
			NodeName:           s.NodeName,
			Tolerations:        s.Tolerations,
			HostNetwork:        s.HostNetwork,
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
