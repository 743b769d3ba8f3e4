package validate

import (
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
)

// The functions below expose the checks' platform and naming rules to pkg/mutate, so that a
// mirror is judged exactly as the validating webhook will judge the rewritten pod.

// SchedulablePlatforms narrows the nodes' platforms to those a pod with spec may be scheduled
// on, going by its nodeSelector and required node affinity on kubernetes.io/os and
// kubernetes.io/arch, as the platform check does.
func SchedulablePlatforms(nodes []Platform, spec *corev1.PodSpec) []Platform {
	return schedulablePlatforms(nodes, spec)
}

// ImagePlatforms turns an image's platforms (Registry.Platforms) into the distinct os/arch
// pairs nodes are compared with; entries without os or architecture, or with os "unknown"
// (attestations), are left out.
func ImagePlatforms(ps []v1.Platform) []Platform {
	return imagePlatforms(ps)
}

// FamiliarName is the full normalised reference (docker.io/library/nginx:latest), the form
// the policy's exemptImages patterns match.
func FamiliarName(ref name.Reference) string {
	return familiarName(ref)
}
