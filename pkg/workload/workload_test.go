package workload

import (
	"context"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func controlledBy(apiVersion, kind string) metav1.ObjectMeta {
	yes := true
	return metav1.ObjectMeta{Namespace: "shop", Name: "x", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: apiVersion, Kind: kind, Name: "owner", UID: "u", Controller: &yes,
	}}}
}

func TestOf(t *testing.T) {
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}}}}
	meta := metav1.ObjectMeta{Namespace: "shop", Name: "x"}
	tests := []struct {
		name      string
		obj       client.Object
		want      bool
		key       string
		template  bool
		daemonSet bool
	}{
		{"deployment", &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: tmpl}}, true, "deployment.apps/x", true, false},
		{"statefulset", &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}}, true, "statefulset.apps/x", true, false},
		{"daemonset", &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}}, true, "daemonset.apps/x", true, true},
		{"bare replicaset", &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}}, true, "replicaset.apps/x", true, false},
		{"replicaset of a deployment", &appsv1.ReplicaSet{ObjectMeta: controlledBy("apps/v1", "Deployment"), Spec: appsv1.ReplicaSetSpec{Template: tmpl}}, false, "", false, false},
		{"replicaset of an Argo Rollout is checked itself", &appsv1.ReplicaSet{ObjectMeta: controlledBy("argoproj.io/v1alpha1", "Rollout"), Spec: appsv1.ReplicaSetSpec{Template: tmpl}}, true, "replicaset.apps/x", true, false},
		{"replicationcontroller", &corev1.ReplicationController{ObjectMeta: meta, Spec: corev1.ReplicationControllerSpec{Template: &tmpl}}, true, "replicationcontroller/x", true, false},
		{"replicationcontroller without template", &corev1.ReplicationController{ObjectMeta: meta}, false, "", false, false},
		{"running job", &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}}, true, "job.batch/x", true, false},
		{"complete job", &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}, Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}}, false, "", false, false},
		{"job of a cronjob", &batchv1.Job{ObjectMeta: controlledBy("batch/v1", "CronJob"), Spec: batchv1.JobSpec{Template: tmpl}}, false, "", false, false},
		{"cronjob", &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}, true, "cronjob.batch/x", true, false},
		{"bare pod", &corev1.Pod{ObjectMeta: meta, Spec: tmpl.Spec}, true, "pod/x", false, false},
		{"pod of a replicaset", &corev1.Pod{ObjectMeta: controlledBy("apps/v1", "ReplicaSet"), Spec: tmpl.Spec}, false, "", false, false},
		{"pod of a job", &corev1.Pod{ObjectMeta: controlledBy("batch/v1", "Job"), Spec: tmpl.Spec}, false, "", false, false},
		{"pod of an operator's kind is checked itself", &corev1.Pod{ObjectMeta: controlledBy("example.com/v1", "Database"), Spec: tmpl.Spec}, true, "pod/x", false, false},
		{"succeeded pod", &corev1.Pod{ObjectMeta: meta, Spec: tmpl.Spec, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, false, "", false, false},
		{"configmap", &corev1.ConfigMap{ObjectMeta: meta}, false, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, ok := Of(tt.obj)
			if ok != tt.want {
				t.Fatalf("Of() ok = %v, want %v", ok, tt.want)
			}
			if !ok {
				return
			}
			if got := w.Key(); got != tt.key {
				t.Errorf("Key() = %q, want %q", got, tt.key)
			}
			if w.Spec == nil || len(w.Spec.Containers) != 1 || w.Spec.Containers[0].Image != "nginx:1" {
				t.Errorf("Spec = %+v, want the template's", w.Spec)
			}
			p := w.Pod(nil, nil)
			if p.Template != tt.template || p.DaemonSet != tt.daemonSet || p.Namespace != "shop" {
				t.Errorf("Pod() = Template %v DaemonSet %v Namespace %q, want %v %v shop", p.Template, p.DaemonSet, p.Namespace, tt.template, tt.daemonSet)
			}
			ref := w.ObjectReference()
			if ref.Name != "x" || ref.Namespace != "shop" || ref.Kind == "" || ref.APIVersion == "" {
				t.Errorf("ObjectReference() = %+v", ref)
			}
		})
	}
}

func TestList(t *testing.T) {
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}}}}
	rsMeta := controlledBy("apps/v1", "Deployment")
	rsMeta.Name = "web-abc"
	podMeta := controlledBy("apps/v1", "ReplicaSet")
	podMeta.Name = "web-abc-1"
	objs := []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: appsv1.DeploymentSpec{Template: tmpl}},
		&appsv1.ReplicaSet{ObjectMeta: rsMeta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}},
		&corev1.Pod{ObjectMeta: podMeta, Spec: tmpl.Spec},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "debug"}, Spec: tmpl.Spec},
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "nightly"}, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}},
	}
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(objs...).Build()
	keys := func(ws []Workload) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.Namespace+"/"+w.Key())
		}
		return out
	}
	all, err := List(context.Background(), c, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keys(all), []string{"shop/deployment.apps/web", "other/cronjob.batch/nightly", "shop/pod/debug"}; !slices.Equal(got, want) {
		t.Errorf("List(all) = %v, want %v", got, want)
	}
	shop, err := List(context.Background(), c, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keys(shop), []string{"shop/deployment.apps/web", "shop/pod/debug"}; !slices.Equal(got, want) {
		t.Errorf("List(shop) = %v, want %v", got, want)
	}
}
