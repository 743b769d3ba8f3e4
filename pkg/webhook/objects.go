package webhook

import (
	"fmt"
	"slices"

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
	Volumes             []pullVolume                  `json:"volumes"`
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
	// VolumeMounts matter for image volumes only: a failed pull of one fails the containers
	// that mount it.
	VolumeMounts []pullMount `json:"volumeMounts"`
}

type pullMount struct {
	Name string `json:"name"`
}

// pullVolume is a volume as far as pulls go: an image volume (spec.volumes[].image) is
// pulled like a container's image.
type pullVolume struct {
	Name  string                    `json:"name"`
	Image *corev1.ImageVolumeSource `json:"image"`
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
	for _, v := range p.Volumes {
		if v.Image != nil {
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{Image: v.Image}})
		}
	}
	// Mounts are kept only when there is an image volume they could name.
	withMounts := len(spec.Volumes) > 0
	// corev1.Container is over a kilobyte: size each slice once instead of growing it.
	spec.InitContainers = containersOf(p.InitContainers, withMounts)
	spec.Containers = containersOf(p.Containers, withMounts)
	if len(p.EphemeralContainers) > 0 {
		spec.EphemeralContainers = make([]corev1.EphemeralContainer, len(p.EphemeralContainers))
		for i, c := range p.EphemeralContainers {
			spec.EphemeralContainers[i].EphemeralContainerCommon = corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image, ImagePullPolicy: c.ImagePullPolicy}
			if withMounts {
				spec.EphemeralContainers[i].VolumeMounts = mountsOf(c.VolumeMounts)
			}
		}
	}
	return spec
}

func containersOf(cs []pullContainer, withMounts bool) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image, ImagePullPolicy: c.ImagePullPolicy}
		if withMounts {
			out[i].VolumeMounts = mountsOf(c.VolumeMounts)
		}
	}
	return out
}

func mountsOf(ms []pullMount) []corev1.VolumeMount {
	if len(ms) == 0 {
		return nil
	}
	out := make([]corev1.VolumeMount, len(ms))
	for i, m := range ms {
		out[i].Name = m.Name
	}
	return out
}

// pullRelevantChange reports whether an update changed anything that decides whether the
// pods' pulls succeed: images (of containers and image volumes), pull policies, pull
// secrets, the ServiceAccount or the node placement (selectors, node name, tolerations, host
// network). Other updates (labels, replicas, resources) are admitted without a look-up.
func pullRelevantChange(old, cur *corev1.PodSpec) bool {
	// Exported fields: equality.Semantic compares only those.
	type image struct {
		Image, PullPolicy string
		// Mounts of image volumes (podSpec keeps mounts only when there are some).
		Mounts []corev1.VolumeMount
	}
	type pullView struct {
		Images             []image
		ImageVolumes       []corev1.Volume
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
			ImageVolumes:       s.Volumes,
			PullSecrets:        s.ImagePullSecrets,
			ServiceAccountName: s.ServiceAccountName,
			NodeSelector:       s.NodeSelector,
			NodeName:           s.NodeName,
			Tolerations:        s.Tolerations,
			HostNetwork:        s.HostNetwork,
		}
		for _, c := range s.InitContainers {
			v.Images = append(v.Images, image{c.Image, string(c.ImagePullPolicy), c.VolumeMounts})
		}
		for _, c := range s.Containers {
			v.Images = append(v.Images, image{c.Image, string(c.ImagePullPolicy), c.VolumeMounts})
		}
		if s.Affinity != nil {
			v.NodeAffinity = s.Affinity.NodeAffinity
		}
		return v
	}
	return !equality.Semantic.DeepEqual(view(old), view(cur))
}

// changedImages returns the containers of cur whose image differs from that of the container
// of the same name in old, or that old does not have. An update of a Pod (not of one of its
// subresources) can change nothing else that makes the kubelet pull: ValidatePodUpdate
// (k8s.io/kubernetes pkg/apis/core/validation/validation.go) lets it change only
// "spec.containers[*].image", "spec.initContainers[*].image", activeDeadlineSeconds,
// terminationGracePeriodSeconds, schedulingGates (removals), tolerations (additions) and,
// while the pod is gated, nodeSelector and node affinity (additions), and refuses to add or
// remove containers ("pod updates may not add or remove containers"). Pull policies, pull
// secrets, the ServiceAccount and volumes are immutable. The kubelet restarts a container
// whose image changed, pulling the new one as its pull policy says.
func changedImages(old, cur []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range cur {
		i := slices.IndexFunc(old, func(o corev1.Container) bool { return o.Name == c.Name })
		if i < 0 || old[i].Image != c.Image {
			out = append(out, c)
		}
	}
	return out
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
