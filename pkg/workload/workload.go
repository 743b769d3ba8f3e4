package workload

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/validate"
)

// Kinds are the kinds whose pulls pullgate checks, in the order List reads them.
var Kinds = []schema.GroupVersionKind{
	appsv1.SchemeGroupVersion.WithKind("Deployment"),
	appsv1.SchemeGroupVersion.WithKind("StatefulSet"),
	appsv1.SchemeGroupVersion.WithKind("DaemonSet"),
	appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
	corev1.SchemeGroupVersion.WithKind("ReplicationController"),
	batchv1.SchemeGroupVersion.WithKind("Job"),
	batchv1.SchemeGroupVersion.WithKind("CronJob"),
	corev1.SchemeGroupVersion.WithKind("Pod"),
}

// Workload is one object whose pods the kubelet will pull for.
type Workload struct {
	// GVK is the object's kind.
	GVK schema.GroupVersionKind
	// Namespace, Name and UID name the object.
	Namespace, Name string
	UID             types.UID
	// Spec is the Pod's spec or the template's.
	Spec *corev1.PodSpec
	// Object is the object itself, for events and owner references.
	Object client.Object
}

// Key names the workload in a namespace, as kubectl does: "deployment.apps/web", "pod/x".
func (w Workload) Key() string {
	gk := w.GVK.GroupKind()
	return fmt.Sprintf("%s/%s", lowerKind(gk), w.Name)
}

func lowerKind(gk schema.GroupKind) string {
	b := []byte(gk.Kind)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	if gk.Group == "" {
		return string(b)
	}
	return string(b) + "." + gk.Group
}

// ObjectReference refers to the workload, for a report's subject. It names no
// resourceVersion: a workload's status changes it all the time, and a report would change
// with it.
func (w Workload) ObjectReference() corev1.ObjectReference {
	apiVersion, kind := w.GVK.ToAPIVersionAndKind()
	return corev1.ObjectReference{APIVersion: apiVersion, Kind: kind, Namespace: w.Namespace, Name: w.Name, UID: w.UID}
}

// Pod is what pkg/validate checks for the workload, as the webhook would at its admission.
func (w Workload) Pod(namespaceLabels map[string]string, keyring *pullsecrets.Keyring) validate.Pod {
	return validate.Pod{
		Namespace:       w.Namespace,
		NamespaceLabels: namespaceLabels,
		Spec:            w.Spec,
		Keyring:         keyring,
		Template:        w.GVK.Kind != "Pod",
		DaemonSet:       w.GVK.Group == appsv1.GroupName && w.GVK.Kind == "DaemonSet",
	}
}

// Of returns the workload obj is, with ok false for an object of another kind, for one whose
// pods are represented by the template of a controller of a checked kind, and for one that
// will pull nothing more (a Pod that has ended, a Job that has finished).
func Of(obj client.Object) (w Workload, ok bool) {
	var spec *corev1.PodSpec
	var gvk schema.GroupVersionKind
	switch o := obj.(type) {
	case *appsv1.Deployment:
		gvk, spec = Kinds[0], &o.Spec.Template.Spec
	case *appsv1.StatefulSet:
		gvk, spec = Kinds[1], &o.Spec.Template.Spec
	case *appsv1.DaemonSet:
		gvk, spec = Kinds[2], &o.Spec.Template.Spec
	case *appsv1.ReplicaSet:
		gvk, spec = Kinds[3], &o.Spec.Template.Spec
	case *corev1.ReplicationController:
		if o.Spec.Template == nil {
			return Workload{}, false
		}
		gvk, spec = Kinds[4], &o.Spec.Template.Spec
	case *batchv1.Job:
		if jobFinished(o) {
			return Workload{}, false
		}
		gvk, spec = Kinds[5], &o.Spec.Template.Spec
	case *batchv1.CronJob:
		gvk, spec = Kinds[6], &o.Spec.JobTemplate.Spec.Template.Spec
	case *corev1.Pod:
		if o.Status.Phase == corev1.PodSucceeded || o.Status.Phase == corev1.PodFailed {
			return Workload{}, false
		}
		gvk, spec = Kinds[7], &o.Spec
	default:
		return Workload{}, false
	}
	if representedByController(gvk, obj) {
		return Workload{}, false
	}
	return Workload{GVK: gvk, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(), Spec: spec, Object: obj}, true
}

// representedByController reports whether obj's controller is of a kind whose template
// already stands for obj's pods: a Deployment's ReplicaSets, a CronJob's Jobs, and the pods of
// any checked controller. A Pod or ReplicaSet controlled by something else (an Argo Rollout,
// an operator's own kind) is checked itself: nothing else will be.
func representedByController(gvk schema.GroupVersionKind, obj client.Object) bool {
	ref := metav1.GetControllerOf(obj)
	if ref == nil {
		return false
	}
	owner := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
	switch gvk.Kind {
	case "ReplicaSet":
		return owner == Kinds[0]
	case "Job":
		return owner == Kinds[6]
	case "Pod":
		for _, k := range Kinds[1:6] { // StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job
			if owner == k {
				return true
			}
		}
	}
	return false
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// List returns the workloads of namespace (all namespaces when it is ""), every kind of Kinds
// read in turn, in pages. A kind that cannot be listed (RBAC, an API server that does not serve it) is
// skipped and its error returned joined with the others, next to what could be listed.
func List(ctx context.Context, r client.Reader, namespace string) ([]Workload, error) {
	// A new list for every page: a decode into the last page's list would reuse its items'
	// memory under the workloads already taken from it.
	newList := []func() client.ObjectList{
		func() client.ObjectList { return &appsv1.DeploymentList{} },
		func() client.ObjectList { return &appsv1.StatefulSetList{} },
		func() client.ObjectList { return &appsv1.DaemonSetList{} },
		func() client.ObjectList { return &appsv1.ReplicaSetList{} },
		func() client.ObjectList { return &corev1.ReplicationControllerList{} },
		func() client.ObjectList { return &batchv1.JobList{} },
		func() client.ObjectList { return &batchv1.CronJobList{} },
		func() client.ObjectList { return &corev1.PodList{} },
	}
	var out []Workload
	var errs []error
	for i, fresh := range newList {
		// In pages, so that a cluster's pods are never held as one response.
		for page := ""; ; {
			list := fresh()
			if err := r.List(ctx, list, client.InNamespace(namespace), client.Limit(pageSize), client.Continue(page)); err != nil {
				if ctx.Err() != nil {
					return out, ctx.Err()
				}
				errs = append(errs, fmt.Errorf("listing %s: %w", Kinds[i].Kind, err))
				break
			}
			for _, obj := range items(list) {
				if w, ok := Of(obj); ok {
					out = append(out, w)
				}
			}
			if page = continueOf(list); page == "" {
				break
			}
		}
	}
	return out, errors.Join(errs...)
}

// pageSize is how many objects one List request asks for.
const pageSize = 500

func continueOf(list client.ObjectList) string {
	if l, ok := list.(metav1.ListInterface); ok {
		return l.GetContinue()
	}
	return ""
}

func items(list client.ObjectList) []client.Object {
	objs, err := meta.ExtractList(list)
	if err != nil {
		return nil // every list above has Items
	}
	out := make([]client.Object, 0, len(objs))
	for _, o := range objs {
		if obj, ok := o.(client.Object); ok {
			out = append(out, obj)
		}
	}
	return out
}
