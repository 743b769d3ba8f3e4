package nodes

import (
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeletNode is a node as a kubelet reports it: annotations, managed fields, capacity,
// addresses, every condition with messages, and images with names and sizes.
func kubeletNode(name string, images int, mutate func(*corev1.Node)) *corev1.Node {
	now := metav1.Now()
	n := &corev1.Node{
		TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "u-" + "1", ResourceVersion: "42",
			Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "arm64",
				"node.kubernetes.io/pool": "general"},
			Annotations:   map[string]string{"node.alpha.kubernetes.io/ttl": "0", "csi.volume.kubernetes.io/nodeid": `{"ebs.csi.aws.com":"i-0"}`},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
		},
		Spec: corev1.NodeSpec{ProviderID: "aws:///x", PodCIDR: "10.0.0.0/24",
			Taints: []corev1.Taint{{Key: "gpu", Value: "a100", Effect: corev1.TaintEffectNoSchedule, TimeAdded: &now}}},
		Status: corev1.NodeStatus{
			Capacity:  corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
			NodeInfo: corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "arm64", ContainerRuntimeVersion: "containerd://1.7.27",
				KubeletVersion: "v1.35.0", OSImage: "Debian", KernelVersion: "6.1"},
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "ok", LastHeartbeatTime: now},
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: now},
			},
			VolumesAttached: []corev1.AttachedVolume{{Name: "kubernetes.io/csi/ebs^vol-1", DevicePath: "/dev/xvdb"}},
		},
	}
	for i := range images {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("registry.example/app-%d@sha256:%064d", i, i), fmt.Sprintf("registry.example/app-%d:v1", i)},
			SizeBytes: int64(i) << 20,
		})
	}
	if mutate != nil {
		mutate(n)
	}
	return n
}

func TestTransformKeepsWhatTheTrackerReads(t *testing.T) {
	for _, tc := range []struct {
		desc string
		node *corev1.Node
	}{
		{"a Ready node", kubeletNode("a", 3, nil)},
		{"a full image list (50: ImagesTruncated)", kubeletNode("b", DefaultNodeStatusMaxImages, nil)},
		{"a cordoned node without images", kubeletNode("c", 0, func(n *corev1.Node) { n.Spec.Unschedulable = true })},
		{"a NotReady node", kubeletNode("d", 2, func(n *corev1.Node) { n.Status.Conditions[1].Status = corev1.ConditionFalse })},
		{"a node without labels for its platform", kubeletNode("e", 1, func(n *corev1.Node) {
			delete(n.Labels, corev1.LabelOSStable)
			delete(n.Labels, corev1.LabelArchStable)
		})},
		{"a Windows node", kubeletNode("f", 1, func(n *corev1.Node) {
			n.Labels[corev1.LabelOSStable], n.Labels[corev1.LabelWindowsBuild] = "windows", "10.0.20348"
			n.Status.NodeInfo.OperatingSystem = "windows"
		})},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			want, wantOK := recordOf(tc.node)
			obj, err := Transform(tc.node.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			kept := obj.(*corev1.Node)
			got, gotOK := recordOf(kept)
			if gotOK != wantOK || !reflect.DeepEqual(got, want) {
				t.Errorf("recordOf(Transform(node)) = %+v, %v; want %+v, %v", got, gotOK, want, wantOK)
			}
			if kept.Annotations != nil || kept.ManagedFields != nil || kept.Status.Capacity != nil || kept.Status.Addresses != nil ||
				kept.Status.VolumesAttached != nil || len(kept.Status.Conditions) > 1 {
				t.Errorf("Transform kept what the tracker does not read: %+v", kept)
			}
		})
	}
	if obj, _ := Transform("not a node"); obj != "not a node" {
		t.Errorf("Transform changed a value that is not a Node: %v", obj)
	}
}
