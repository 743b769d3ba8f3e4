package nodes

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullgate/pullgate/pkg/validate"
)

func node(name, os, arch string, ready corev1.ConditionStatus) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if os != "" {
		n.Labels[corev1.LabelOSStable] = os
	}
	if arch != "" {
		n.Labels[corev1.LabelArchStable] = arch
	}
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
	}
	return n
}

func TestPlatforms(t *testing.T) {
	amd := validate.Platform{OS: "linux", Architecture: "amd64"}
	arm := validate.Platform{OS: "linux", Architecture: "arm64"}
	fromStatus := node("status-only", "", "", corev1.ConditionTrue)
	fromStatus.Status.NodeInfo = corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "arm64"}
	tests := []struct {
		desc string
		ops  func(p *Platforms)
		want []validate.Platform
	}{
		{"no nodes", func(*Platforms) {}, nil},
		{"ready nodes, deduplicated and sorted", func(p *Platforms) {
			p.Observe(node("a", "linux", "arm64", corev1.ConditionTrue))
			p.Observe(node("b", "linux", "amd64", corev1.ConditionTrue))
			p.Observe(node("c", "linux", "amd64", corev1.ConditionTrue))
		}, []validate.Platform{amd, arm}},
		{"not-ready and unknown nodes are left out", func(p *Platforms) {
			p.Observe(node("a", "linux", "arm64", corev1.ConditionFalse))
			p.Observe(node("b", "linux", "amd64", corev1.ConditionUnknown))
			p.Observe(node("c", "linux", "s390x", ""))
		}, nil},
		{"a node that stops being ready is dropped", func(p *Platforms) {
			p.Observe(node("a", "linux", "arm64", corev1.ConditionTrue))
			p.Observe(node("a", "linux", "arm64", corev1.ConditionFalse))
		}, nil},
		{"a deleted node is dropped, the other stays", func(p *Platforms) {
			p.Observe(node("a", "linux", "arm64", corev1.ConditionTrue))
			p.Observe(node("b", "linux", "amd64", corev1.ConditionTrue))
			p.Forget("a")
		}, []validate.Platform{amd}},
		{"status is used when labels are missing", func(p *Platforms) { p.Observe(fromStatus) }, []validate.Platform{arm}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p := NewPlatforms()
			tc.ops(p)
			if diff := cmp.Diff(tc.want, p.Get(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
