package validate

import (
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Platform is an os/arch pair that nodes run and images are built for. Variants are left out
// on purpose: node labels do not carry them, and the runtime picks a variant itself.
type Platform struct {
	OS           string
	Architecture string
}

func (p Platform) String() string { return p.OS + "/" + p.Architecture }

func (p Platform) labels() labels.Set {
	return labels.Set{corev1.LabelOSStable: p.OS, corev1.LabelArchStable: p.Architecture}
}

// schedulablePlatforms narrows the nodes' platforms to those the pod may be scheduled on,
// going by its nodeSelector and required node affinity on kubernetes.io/os and
// kubernetes.io/arch. Terms on other labels are assumed satisfiable: they say nothing about
// what the image must be built for.
func schedulablePlatforms(nodes []Platform, spec *corev1.PodSpec) []Platform {
	var out []Platform
	for _, p := range nodes {
		if matchesNodeSelector(p, spec.NodeSelector) && matchesRequiredAffinity(p, spec.Affinity) {
			out = append(out, p)
		}
	}
	return out
}

func matchesNodeSelector(p Platform, selector map[string]string) bool {
	for _, key := range []string{corev1.LabelOSStable, corev1.LabelArchStable} {
		if want, ok := selector[key]; ok && want != p.labels()[key] {
			return false
		}
	}
	return true
}

func matchesRequiredAffinity(p Platform, affinity *corev1.Affinity) bool {
	if affinity == nil || affinity.NodeAffinity == nil ||
		affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	terms := affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return true
	}
	set := p.labels()
	// Terms are ORed; the expressions of one term are ANDed.
	for _, term := range terms {
		if termMatches(set, term.MatchExpressions) {
			return true
		}
	}
	return false
}

func termMatches(set labels.Set, exprs []corev1.NodeSelectorRequirement) bool {
	for _, e := range exprs {
		if e.Key != corev1.LabelOSStable && e.Key != corev1.LabelArchStable {
			continue
		}
		var op selection.Operator
		switch e.Operator {
		case corev1.NodeSelectorOpIn:
			op = selection.In
		case corev1.NodeSelectorOpNotIn:
			op = selection.NotIn
		case corev1.NodeSelectorOpExists:
			op = selection.Exists
		case corev1.NodeSelectorOpDoesNotExist:
			op = selection.DoesNotExist
		default:
			// Gt / Lt on os or arch never match a non-numeric value.
			return false
		}
		req, err := labels.NewRequirement(e.Key, op, e.Values)
		if err != nil || !req.Matches(set) {
			return false
		}
	}
	return true
}

// imagePlatforms turns an image's platforms into the os/arch pairs nodes are compared with.
func imagePlatforms(ps []v1.Platform) []Platform {
	var out []Platform
	for _, p := range ps {
		pp := Platform{OS: p.OS, Architecture: p.Architecture}
		if pp.OS == "" || pp.Architecture == "" || pp.OS == "unknown" || slices.Contains(out, pp) {
			continue
		}
		out = append(out, pp)
	}
	return out
}

func joinPlatforms(ps []Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}
