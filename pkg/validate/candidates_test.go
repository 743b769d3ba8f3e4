package validate_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

func affinity(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
	}}
}

func expr(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// TestSchedulablePlatforms is issue 12 item 9: the nodes a pod may run on are those the
// scheduler would consider, judged on all their labels, their taints and cordon; nodeName
// names the one node.
func TestSchedulablePlatforms(t *testing.T) {
	amd := validate.Platform{OS: "linux", Architecture: "amd64"}
	arm := validate.Platform{OS: "linux", Architecture: "arm64"}
	win := validate.Platform{OS: "windows", Architecture: "amd64"}
	cluster := testnodes.Snapshot(
		testnodes.Ready("web-1", "linux", "amd64", testnodes.Label("pool", "web")),
		testnodes.Ready("web-2", "linux", "amd64", testnodes.Label("pool", "web")),
		testnodes.Ready("gpu-1", "linux", "arm64", testnodes.Label("pool", "gpu"), testnodes.Taint("gpu", "true", corev1.TaintEffectNoSchedule)),
		testnodes.Ready("batch-1", "linux", "arm64", testnodes.Label("pool", "batch"), testnodes.Taint("batch", "", corev1.TaintEffectPreferNoSchedule)),
		testnodes.Ready("cordoned", "windows", "amd64", testnodes.Cordoned()),
		testnodes.Ready("evicting", "linux", "s390x", testnodes.Taint(corev1.TaintNodeUnreachable, "", corev1.TaintEffectNoExecute)),
		testnodes.Ready("pressured", "linux", "ppc64le", testnodes.Taint(corev1.TaintNodeDiskPressure, "", corev1.TaintEffectNoSchedule)),
	)
	tolerate := func(key string, effect corev1.TaintEffect) []corev1.Toleration {
		return []corev1.Toleration{{Key: key, Operator: corev1.TolerationOpExists, Effect: effect}}
	}
	tests := []struct {
		desc      string
		spec      corev1.PodSpec
		daemonSet bool
		want      []validate.Platform
	}{
		{"no constraints: untainted, uncordoned nodes (PreferNoSchedule does not exclude)", corev1.PodSpec{}, false, []validate.Platform{amd, arm}},
		{"nodeName alone, whatever its taints", corev1.PodSpec{NodeName: "gpu-1", NodeSelector: map[string]string{"pool": "web"}}, false, []validate.Platform{arm}},
		{"nodeName of a node that is not Ready or not known: none", corev1.PodSpec{NodeName: "gone"}, false, nil},
		{"nodeSelector on any label", corev1.PodSpec{NodeSelector: map[string]string{"pool": "web"}}, false, []validate.Platform{amd}},
		{"nodeSelector no node has", corev1.PodSpec{NodeSelector: map[string]string{"pool": "none"}}, false, nil},
		{"a tolerated NoSchedule taint", corev1.PodSpec{Tolerations: tolerate("gpu", corev1.TaintEffectNoSchedule)}, false, []validate.Platform{amd, arm}},
		{"a toleration for another effect does not tolerate NoSchedule",
			corev1.PodSpec{NodeSelector: map[string]string{"pool": "gpu"}, Tolerations: tolerate("gpu", corev1.TaintEffectNoExecute)}, false, nil},
		{"a cordoned node needs the unschedulable toleration",
			corev1.PodSpec{Tolerations: tolerate(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)}, false, []validate.Platform{amd, arm, win}},
		{"required affinity on another label, terms ORed",
			corev1.PodSpec{Affinity: affinity(expr("pool", corev1.NodeSelectorOpIn, "web"), expr("pool", corev1.NodeSelectorOpIn, "batch"))}, false, []validate.Platform{amd, arm}},
		{"required affinity NotIn", corev1.PodSpec{Affinity: affinity(expr("pool", corev1.NodeSelectorOpNotIn, "web"))}, false, []validate.Platform{arm}},
		{"required affinity on the hostname picks single nodes",
			corev1.PodSpec{Affinity: affinity(expr(corev1.LabelHostname, corev1.NodeSelectorOpIn, "batch-1"))}, false, []validate.Platform{arm}},
		{"matchFields metadata.name, as the DaemonSet controller writes",
			corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{
				{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"web-2"}}}}),
			}, false, []validate.Platform{amd}},
		{"a DaemonSet's pods tolerate cordons, pressure and not-ready/unreachable NoExecute", corev1.PodSpec{}, true,
			[]validate.Platform{amd, arm, {OS: "linux", Architecture: "ppc64le"}, {OS: "linux", Architecture: "s390x"}, win}},
		{"but not other taints", corev1.PodSpec{NodeSelector: map[string]string{"pool": "gpu"}}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := validate.SchedulablePlatforms(cluster, validate.Placement{Spec: &tc.spec, DaemonSet: tc.daemonSet})
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestCandidateNodes checks whole pods against candidate nodes (items 9 and 10): the
// platform check judges only the nodes the pod may run on, and an image already on them
// is not pulled with IfNotPresent.
func TestCandidateNodes(t *testing.T) {
	f := newFixture(t)
	pub, priv := f.public, f.private
	name := func(ref string) string { return ref } // node image names are the normalised references
	amd := testnodes.Ready("amd", "linux", "amd64")
	arm := testnodes.Ready("arm", "linux", "arm64")
	armTainted := testnodes.Ready("arm", "linux", "arm64", testnodes.Taint("dedicated", "edge", corev1.TaintEffectNoSchedule))
	armCordoned := testnodes.Ready("arm", "linux", "arm64", testnodes.Cordoned())
	missing := pub.Ref("team/preloaded", ":dev")
	privImage := priv.Ref("secret/app", ":v1")
	withPolicy := func(spec corev1.PodSpec, p corev1.PullPolicy) corev1.PodSpec {
		spec.Containers[0].ImagePullPolicy = p
		return spec
	}
	tests := []struct {
		desc      string
		spec      corev1.PodSpec
		nodes     []*corev1.Node
		daemonSet bool
		want      []brief
		wantText  []string
	}{{
		desc:  "amd64-only image, pod named to the arm64 node: denied on that node alone",
		spec:  func() corev1.PodSpec { s := pod(pub.Ref("team/app", ":v1.0.0")); s.NodeName = "arm"; return s }(),
		nodes: []*corev1.Node{amd, arm},
		want:  []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
	}, {
		desc:  "amd64-only image, pod named to the amd64 node",
		spec:  func() corev1.PodSpec { s := pod(pub.Ref("team/app", ":v1.0.0")); s.NodeName = "amd"; return s }(),
		nodes: []*corev1.Node{amd, arm},
	}, {
		desc:  "a node whose taint the pod does not tolerate is no candidate",
		spec:  pod(pub.Ref("team/app", ":v1.0.0")),
		nodes: []*corev1.Node{amd, armTainted},
	}, {
		desc: "a node whose taint the pod tolerates is one",
		spec: func() corev1.PodSpec {
			s := pod(pub.Ref("team/app", ":v1.0.0"))
			s.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "edge", Effect: corev1.TaintEffectNoSchedule}}
			return s
		}(),
		nodes: []*corev1.Node{amd, armTainted},
		want:  []brief{{validate.PlatformMismatch, "c0", validate.Warn}},
	}, {
		desc:  "a cordoned node is no candidate for a Deployment's pods",
		spec:  pod(pub.Ref("team/app", ":v1.0.0")),
		nodes: []*corev1.Node{amd, armCordoned},
	}, {
		desc:      "but is one for a DaemonSet's, which tolerate the cordon",
		spec:      pod(pub.Ref("team/app", ":v1.0.0")),
		nodes:     []*corev1.Node{amd, armCordoned},
		daemonSet: true,
		want:      []brief{{validate.PlatformMismatch, "c0", validate.Warn}},
	}, {
		desc: "nodeSelector on a pool label narrows the nodes",
		spec: func() corev1.PodSpec {
			s := pod(pub.Ref("team/app", ":v1.0.0"))
			s.NodeSelector = map[string]string{"pool": "web"}
			return s
		}(),
		nodes: []*corev1.Node{testnodes.Ready("amd", "linux", "amd64", testnodes.Label("pool", "web")), arm},
	}, {
		desc: "no candidate node: the platform check says nothing",
		spec: func() corev1.PodSpec {
			s := pod(pub.Ref("team/armonly", ":v1"))
			s.NodeSelector = map[string]string{"pool": "none"}
			return s
		}(),
		nodes: []*corev1.Node{amd},
	}, {
		desc: "image not in the registry but on every candidate node, IfNotPresent: not pulled",
		spec: withPolicy(pod(missing), corev1.PullIfNotPresent),
		nodes: []*corev1.Node{
			testnodes.Ready("amd", "linux", "amd64", testnodes.Images(name(missing))),
			testnodes.Ready("amd2", "linux", "amd64", testnodes.Images(name(missing))),
		},
	}, {
		desc:  "pull policy left to its default for a version tag is IfNotPresent",
		spec:  pod(missing),
		nodes: []*corev1.Node{testnodes.Ready("amd", "linux", "amd64", testnodes.Images(name(missing)))},
	}, {
		desc:  "the same with Always: pulled, and not found",
		spec:  withPolicy(pod(missing), corev1.PullAlways),
		nodes: []*corev1.Node{testnodes.Ready("amd", "linux", "amd64", testnodes.Images(name(missing)))},
		want:  []brief{{validate.ImageNotFound, "c0", validate.Deny}},
	}, {
		desc:     "on some candidate nodes only: warns",
		spec:     withPolicy(pod(missing), corev1.PullIfNotPresent),
		nodes:    []*corev1.Node{testnodes.Ready("amd-loaded", "linux", "amd64", testnodes.Images(name(missing))), amd},
		want:     []brief{{validate.ImageNotFound, "c0", validate.Warn}},
		wantText: []string{"1 of 2 candidate nodes have the image"},
	}, {
		desc:  "an arm64-only image on every candidate (amd64) node is still of the wrong platform",
		spec:  withPolicy(pod(pub.Ref("team/armonly", ":v1")), corev1.PullIfNotPresent),
		nodes: []*corev1.Node{testnodes.Ready("amd", "linux", "amd64", testnodes.Images(name(pub.Ref("team/armonly", ":v1"))))},
		want:  []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
	}, {
		desc:  "on a node the pod cannot run on: denied",
		spec:  withPolicy(pod(missing), corev1.PullIfNotPresent),
		nodes: []*corev1.Node{testnodes.Ready("amd-loaded", "linux", "amd64", testnodes.Images(name(missing)), testnodes.Taint("x", "", corev1.TaintEffectNoSchedule)), amd},
		want:  []brief{{validate.ImageNotFound, "c0", validate.Deny}},
	}, {
		desc:     "private image without credentials on every candidate node: denied, the kubelet verifies credentials",
		spec:     withPolicy(pod(privImage), corev1.PullIfNotPresent),
		nodes:    []*corev1.Node{testnodes.Ready("amd", "linux", "amd64", testnodes.Images(name(privImage)))},
		want:     []brief{{validate.NoCredentials, "c0", validate.Deny}},
		wantText: []string{"verifies the pod's credentials"},
	}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			snapshot := testnodes.Snapshot(tc.nodes...)
			checker := &validate.Checker{
				Registry: registrycache.New(
					registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}),
					registrycache.WithBreaker(0, 0),
				),
				Nodes: func() *validate.Nodes { return snapshot },
			}
			spec := tc.spec
			kr, err := pullsecrets.ForPod(t.Context(), f.reader, ns, &spec)
			if err != nil {
				t.Fatalf("ForPod: %v", err)
			}
			got := checker.Check(t.Context(), testPolicy(), validate.Pod{Namespace: ns, Spec: &spec, Keyring: kr, DaemonSet: tc.daemonSet})
			checkFindings(t, got, tc.want, tc.wantText)
			// A pull that fails on some candidate nodes (without the image, or of another
			// platform), and only such a pull, is marked so (the re-check reports it failing).
			for _, g := range got {
				if partial := strings.Contains(g.Message, "the pod fails on the others") || strings.Contains(g.Message, "the pod fails on those nodes"); g.OnSomeNodes != partial {
					t.Errorf("%s %q: OnSomeNodes = %v, want %v", g.Reason, g.Message, g.OnSomeNodes, partial)
				}
			}
		})
	}
}
