package validate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
)

func TestSchedulablePlatforms(t *testing.T) {
	amd := Platform{OS: "linux", Architecture: "amd64"}
	arm := Platform{OS: "linux", Architecture: "arm64"}
	win := Platform{OS: "windows", Architecture: "amd64"}
	nodes := []Platform{amd, arm, win}
	affinity := func(terms ...[]corev1.NodeSelectorRequirement) *corev1.Affinity {
		var ts []corev1.NodeSelectorTerm
		for _, exprs := range terms {
			ts = append(ts, corev1.NodeSelectorTerm{MatchExpressions: exprs})
		}
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: ts},
		}}
	}
	req := func(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	tests := []struct {
		desc string
		spec corev1.PodSpec
		want []Platform
	}{
		{"no constraints", corev1.PodSpec{}, nodes},
		{"nodeSelector on arch", corev1.PodSpec{NodeSelector: map[string]string{corev1.LabelArchStable: "arm64"}}, []Platform{arm}},
		{"nodeSelector on os", corev1.PodSpec{NodeSelector: map[string]string{corev1.LabelOSStable: "linux"}}, []Platform{amd, arm}},
		{"nodeSelector on another label only", corev1.PodSpec{NodeSelector: map[string]string{"pool": "gpu"}}, nodes},
		{"affinity In", corev1.PodSpec{Affinity: affinity([]corev1.NodeSelectorRequirement{req(corev1.LabelArchStable, corev1.NodeSelectorOpIn, "amd64")})}, []Platform{amd, win}},
		{"affinity NotIn", corev1.PodSpec{Affinity: affinity([]corev1.NodeSelectorRequirement{req(corev1.LabelOSStable, corev1.NodeSelectorOpNotIn, "windows")})}, []Platform{amd, arm}},
		{"affinity terms are ORed", corev1.PodSpec{Affinity: affinity(
			[]corev1.NodeSelectorRequirement{req(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "windows")},
			[]corev1.NodeSelectorRequirement{req(corev1.LabelArchStable, corev1.NodeSelectorOpIn, "arm64")},
		)}, []Platform{arm, win}},
		{"affinity expressions are ANDed", corev1.PodSpec{Affinity: affinity([]corev1.NodeSelectorRequirement{
			req(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "linux"),
			req(corev1.LabelArchStable, corev1.NodeSelectorOpIn, "amd64"),
		})}, []Platform{amd}},
		{"nodeSelector and affinity both apply", corev1.PodSpec{
			NodeSelector: map[string]string{corev1.LabelOSStable: "linux"},
			Affinity:     affinity([]corev1.NodeSelectorRequirement{req(corev1.LabelArchStable, corev1.NodeSelectorOpIn, "amd64")}),
		}, []Platform{amd}},
		{"selector no node satisfies", corev1.PodSpec{NodeSelector: map[string]string{corev1.LabelArchStable: "s390x"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := schedulablePlatforms(nodes, &tc.spec)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestClosestTags(t *testing.T) {
	tags := []string{"1.25.0", "1.26.0", "1.26.1", "stable", "latest", "alpine"}
	tests := []struct {
		want string
		n    int
		out  []string
	}{
		{"1.26.2", 3, []string{"1.26.1", "1.26.0", "1.25.0"}},
		{"stabel", 1, []string{"stable"}},
		{"completely-different-name", 3, nil},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if diff := cmp.Diff(tc.out, closestTags(tc.want, tags, tc.n), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
