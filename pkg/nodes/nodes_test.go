package nodes_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllertest"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/pkg/nodes"
	"github.com/pullgate/pullgate/pkg/validate"
)

func notReady(n *corev1.Node) *corev1.Node {
	n.Status.Conditions[0].Status = corev1.ConditionFalse
	return n
}

func TestTracker(t *testing.T) {
	amd := validate.Platform{OS: "linux", Architecture: "amd64"}
	arm := validate.Platform{OS: "linux", Architecture: "arm64"}
	fromStatus := testnodes.Ready("status-only", "linux", "arm64")
	delete(fromStatus.Labels, corev1.LabelOSStable)
	delete(fromStatus.Labels, corev1.LabelArchStable)
	unknownReady := testnodes.Ready("c", "linux", "s390x")
	unknownReady.Status.Conditions = nil
	tests := []struct {
		desc       string
		ops        func(tr *nodes.Tracker)
		want       []validate.Platform
		wantNodes  int
		wantGroups int
	}{
		{"no nodes", func(*nodes.Tracker) {}, nil, 0, 0},
		{"ready nodes; alike nodes share a group whatever their names and hostnames", func(tr *nodes.Tracker) {
			tr.Observe(testnodes.Ready("a", "linux", "arm64"))
			tr.Observe(testnodes.Ready("b", "linux", "amd64"))
			tr.Observe(testnodes.Ready("c", "linux", "amd64", testnodes.Images("docker.io/library/nginx:1.27")))
		}, []validate.Platform{amd, arm}, 3, 2},
		{"a label, taint, cordon or runtime makes another group", func(tr *nodes.Tracker) {
			tr.Observe(testnodes.Ready("a", "linux", "amd64"))
			tr.Observe(testnodes.Ready("b", "linux", "amd64", testnodes.Label("pool", "gpu")))
			tr.Observe(testnodes.Ready("c", "linux", "amd64", testnodes.Taint("gpu", "true", corev1.TaintEffectNoSchedule)))
			tr.Observe(testnodes.Ready("d", "linux", "amd64", testnodes.Cordoned()))
			tr.Observe(testnodes.Ready("e", "linux", "amd64", testnodes.Runtime("cri-o://1.31.0")))
		}, []validate.Platform{amd}, 5, 5},
		{"not-ready and unknown nodes are left out", func(tr *nodes.Tracker) {
			tr.Observe(notReady(testnodes.Ready("a", "linux", "arm64")))
			tr.Observe(unknownReady)
		}, nil, 0, 0},
		{"a node that stops being ready is dropped", func(tr *nodes.Tracker) {
			tr.Observe(testnodes.Ready("a", "linux", "arm64"))
			tr.Observe(notReady(testnodes.Ready("a", "linux", "arm64")))
		}, nil, 0, 0},
		{"a deleted node is dropped, the other stays", func(tr *nodes.Tracker) {
			tr.Observe(testnodes.Ready("a", "linux", "arm64"))
			tr.Observe(testnodes.Ready("b", "linux", "amd64"))
			tr.Forget("a")
		}, []validate.Platform{amd}, 1, 1},
		{"status is used when labels are missing", func(tr *nodes.Tracker) { tr.Observe(fromStatus) }, []validate.Platform{arm}, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			tr := nodes.NewTracker(nodes.WithDebounce(0))
			tc.ops(tr)
			got := tr.Get()
			if diff := cmp.Diff(tc.want, validate.SchedulablePlatforms(got, validate.Placement{Spec: &corev1.PodSpec{}}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
			if got.Len() != tc.wantNodes || got.Groups() != tc.wantGroups {
				t.Errorf("got %d nodes in %d groups, want %d in %d", got.Len(), got.Groups(), tc.wantNodes, tc.wantGroups)
			}
		})
	}
}

// TestTrackerIgnoresHeartbeats: the kubelet updates its node for heartbeats and condition
// times; none of that changes what the checks read, so the snapshot is not rebuilt.
func TestTrackerIgnoresHeartbeats(t *testing.T) {
	tr := nodes.NewTracker(nodes.WithDebounce(0))
	n := testnodes.Ready("a", "linux", "amd64", testnodes.Images("docker.io/library/nginx:1.27"))
	tr.Observe(n)
	before := tr.Get()

	beat := n.DeepCopy()
	beat.ResourceVersion = "2"
	beat.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now())
	beat.Status.Conditions = append(beat.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse})
	tr.Observe(beat)
	if tr.Get() != before {
		t.Error("a heartbeat rebuilt the snapshot")
	}

	pulled := beat.DeepCopy()
	pulled.Status.Images = append(pulled.Status.Images, corev1.ContainerImage{Names: []string{"docker.io/library/redis:7"}})
	tr.Observe(pulled)
	if tr.Get() == before {
		t.Error("a new image on the node did not rebuild the snapshot")
	}
}

// TestTrackerDebounce: a lone change is seen at once; a burst of changes (the informer's
// first list) is rebuilt once more, a moment later.
func TestTrackerDebounce(t *testing.T) {
	tr := nodes.NewTracker(nodes.WithDebounce(50 * time.Millisecond))
	tr.Observe(testnodes.Ready("first", "linux", "amd64"))
	if tr.Get().Len() != 1 {
		t.Fatalf("a lone change is not in the snapshot at once")
	}
	tr.Forget("first")
	for i := range 100 {
		tr.Observe(testnodes.Ready(fmt.Sprintf("n%d", i), "linux", "amd64"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Get().Len() != 100 {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot has %d nodes, want 100", tr.Get().Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if g := tr.Get().Groups(); g != 1 {
		t.Errorf("100 alike nodes make %d groups, want 1", g)
	}
}

// The informer's initial list reaches the Tracker one node at a time: no snapshot of part of
// it may be published (a pod would be judged by the first node alone), and Synced says when
// the whole of it is in.
func TestTrackerPublishesNoPartialInitialList(t *testing.T) {
	informer := controllertest.NewFakeInformer() // not synced yet
	informers := &informertest.FakeInformers{InformersByGVK: map[schema.GroupVersionKind]toolscache.SharedIndexInformer{
		corev1.SchemeGroupVersion.WithKind("Node"): informer,
	}, Scheme: scheme.Scheme}
	tr := nodes.NewTracker()
	if err := tr.Watch(t.Context(), informers); err != nil {
		t.Fatal(err)
	}
	informer.Add(testnodes.Ready("arm", "linux", "arm64"))
	informer.Add(testnodes.Ready("amd", "linux", "amd64"))
	if n := tr.Get().Len(); n != 0 || tr.Synced() {
		t.Fatalf("before the initial list is complete: %d nodes published, Synced %v; want 0, false", n, tr.Synced())
	}
	informer.Synced()
	deadline := time.Now().Add(5 * time.Second)
	for !tr.Synced() {
		if time.Now().After(deadline) {
			t.Fatal("not Synced after the informer synced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := tr.Get().Len(); n != 2 {
		t.Errorf("after the initial list: %d nodes, want 2", n)
	}
}
