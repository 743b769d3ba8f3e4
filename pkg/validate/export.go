package validate

import (
	"fmt"

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

// CandidatePlatforms lists, for kubectl pullgate explain, the distinct platforms and
// runtimes of the Ready nodes a pod may run on (its node alone when spec.nodeName is set),
// with the number of such nodes: "linux/amd64 (containerd 2, 1 node)".
func (ns *Nodes) CandidatePlatforms(p Placement) []string {
	var out []string
	counts := map[string]int{}
	for _, s := range ns.candidates(p).sel {
		k := s.group.Platform.Platform().String() + " (" + s.group.Runtime.String()
		if _, ok := counts[k]; !ok {
			out = append(out, k)
		}
		counts[k] += s.count()
	}
	for i, k := range out {
		n := counts[k]
		out[i] = fmt.Sprintf("%s, %d node%s)", k, n, map[bool]string{true: "s"}[n != 1])
	}
	return out
}
