package validate_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/pkg/validate"
)

func TestCandidatePlatforms(t *testing.T) {
	cluster := testnodes.Snapshot(
		testnodes.Ready("a-1", "linux", "amd64", testnodes.Runtime("containerd://2.1.4")),
		testnodes.Ready("a-2", "linux", "amd64", testnodes.Runtime("containerd://2.1.4")),
		testnodes.Ready("old-1", "linux", "amd64", testnodes.Runtime("containerd://1.6.38")),
		testnodes.Ready("arm-1", "linux", "arm64", testnodes.Runtime("containerd://2.1.4"), testnodes.Taint("arm", "", corev1.TaintEffectNoSchedule)),
	)
	tests := []struct {
		desc string
		spec corev1.PodSpec
		want []string
	}{
		{"a scheduled pod: its node alone", corev1.PodSpec{NodeName: "old-1"},
			[]string{"linux/amd64 (containerd 1, 1 node)"}},
		{"a pending pod: the nodes it may be scheduled on", corev1.PodSpec{},
			[]string{"linux/amd64 (containerd 2, 2 nodes)", "linux/amd64 (containerd 1, 1 node)"}},
		{"tolerating the taint adds the tainted nodes", corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "arm", Operator: corev1.TolerationOpExists}},
			NodeSelector: map[string]string{corev1.LabelArchStable: "arm64"}},
			[]string{"linux/arm64 (containerd 2, 1 node)"}},
		{"a node that is not Ready or not known: none", corev1.PodSpec{NodeName: "gone"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := cluster.CandidatePlatforms(validate.Placement{Spec: &tc.spec})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
		})
	}
}
