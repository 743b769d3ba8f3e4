package validate

import (
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The functions below expose the checks' platform and naming rules to pkg/mutate, so that a
// mirror is judged exactly as the validating webhook will judge the rewritten pod.

// ImagePlatforms turns an image's platforms (Registry.Platforms) into the distinct os/arch
// pairs nodes are compared with, architectures normalised as containerd does (x86_64 is
// amd64); entries without os or architecture, or unknown/unknown (attestations), are left
// out.
func ImagePlatforms(ps []v1.Platform) []Platform {
	return imagePlatforms(ps)
}

// FamiliarName is the full normalised reference (docker.io/library/nginx:latest), the form
// the policy's exemptImages patterns match.
func FamiliarName(ref name.Reference) string {
	return familiarName(ref)
}
