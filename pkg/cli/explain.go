package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pullgate/pullgate/pkg/explain"
	"github.com/pullgate/pullgate/pkg/validate"
)

type explainOptions struct {
	*options
	allNamespaces, failing bool
}

func newExplainCommand(o *options) *cobra.Command {
	eo := &explainOptions{options: o}
	cmd := &cobra.Command{
		Use:   "explain [TYPE/]NAME | -A --failing",
		Short: "Explain why a pod's images fail to pull: the kubelet's error, the registry's answer, the fix",
		Long: `explain reads the container statuses and events of a pod (or of the pods of a
deploy/, sts/, ds/, rs/, job/ or cronjob/), checks its images now with the pull secrets the
kubelet uses (the pod's, else its ServiceAccount's) and against its node's platform, and
prints for each failing container the cause, the evidence and the fix. Without a name it
explains the failing pods of the namespace (-A: of every namespace).`,
		Example: `  kubectl pullgate explain pod/web-7d4b9c-x2jk -n shop
  kubectl pullgate explain deploy/web -n shop
  kubectl pullgate explain -A --failing`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return eo.run(cmd.Context(), args) },
	}
	cmd.Flags().BoolVarP(&eo.allNamespaces, "all-namespaces", "A", false, "explain the failing pods of every namespace")
	cmd.Flags().BoolVar(&eo.failing, "failing", false, "only pods with a container waiting on a failed pull (ErrImagePull, ImagePullBackOff); implied without a name")
	return cmd
}

func (eo *explainOptions) run(ctx context.Context, args []string) error {
	if eo.allNamespaces && len(args) > 0 {
		return usage("a name cannot be given with -A")
	}
	ns, err := eo.namespace()
	if err != nil {
		return err
	}
	if eo.allNamespaces {
		ns = ""
	}
	c, err := eo.cluster()
	if err != nil {
		return err
	}
	pol, err := eo.loadPolicy(ctx, c)
	if err != nil {
		return err
	}
	pods, err := eo.pods(ctx, c, ns, args)
	if err != nil {
		return err
	}
	failing := eo.failing || len(args) == 0
	if failing {
		kept := pods[:0]
		for _, p := range pods {
			if explain.Failing(p) {
				kept = append(kept, p)
			}
		}
		pods = kept
	}
	if len(pods) == 0 {
		where := "namespace " + ns
		if ns == "" {
			where = "any namespace"
		}
		if failing {
			fmt.Fprintf(eo.streams.Out, "No pod in %s is failing to pull its images.\n", where)
		} else {
			fmt.Fprintf(eo.streams.Out, "No pods found for %s in %s.\n", args[0], where)
		}
		return nil
	}
	snapshot, skipped, err := eo.clusterNodes(ctx, c)
	if err != nil {
		return err
	}
	ex := &explain.Explainer{
		Checker:      &validate.Checker{Registry: eo.registries(pol), Nodes: func() *validate.Nodes { return snapshot }},
		Policy:       pol,
		Reader:       c,
		NodesSkipped: skipped,
	}
	for i, p := range pods {
		eo.progressf("explaining pod %d/%d", i+1, len(pods))
		rctx, cancel := context.WithTimeout(ctx, 2*pol.LookupTimeout.Duration+explainSlack)
		r, err := ex.Explain(rctx, p)
		cancel()
		eo.progressDone()
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(eo.streams.Out)
		}
		r.Write(eo.streams.Out)
	}
	return nil
}

// explainSlack bounds the registry work of one pod beyond twice the policy's look-up timeout
// (tag lists for suggestions, one look-up per matching secret entry).
const explainSlack = 20 * time.Second

// pods resolves the argument into pods: pod/NAME (or NAME), or a workload's pods.
func (eo *explainOptions) pods(ctx context.Context, c *cluster, ns string, args []string) ([]*corev1.Pod, error) {
	if len(args) == 0 {
		var list corev1.PodList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, eo.readError(c, err, "pods")
		}
		return ptrs(list.Items), nil
	}
	kind, name, ok := strings.Cut(args[0], "/")
	if !ok {
		kind, name = "pod", args[0]
	}
	key := types.NamespacedName{Namespace: ns, Name: name}
	var selector *metav1.LabelSelector
	var obj client.Object
	switch strings.ToLower(kind) {
	case "pod", "pods", "po":
		var p corev1.Pod
		if err := c.Get(ctx, key, &p); err != nil {
			return nil, eo.readError(c, err, args[0])
		}
		return []*corev1.Pod{&p}, nil
	case "deploy", "deployment", "deployments", "deployment.apps":
		d := &appsv1.Deployment{}
		obj = d
		if err := c.Get(ctx, key, d); err != nil {
			return nil, eo.readError(c, err, args[0])
		}
		selector = d.Spec.Selector
	case "sts", "statefulset", "statefulsets", "statefulset.apps":
		s := &appsv1.StatefulSet{}
		obj = s
		if err := c.Get(ctx, key, s); err != nil {
			return nil, eo.readError(c, err, args[0])
		}
		selector = s.Spec.Selector
	case "ds", "daemonset", "daemonsets", "daemonset.apps":
		d := &appsv1.DaemonSet{}
		obj = d
		if err := c.Get(ctx, key, d); err != nil {
			return nil, eo.readError(c, err, args[0])
		}
		selector = d.Spec.Selector
	case "rs", "replicaset", "replicasets", "replicaset.apps":
		r := &appsv1.ReplicaSet{}
		obj = r
		if err := c.Get(ctx, key, r); err != nil {
			return nil, eo.readError(c, err, args[0])
		}
		selector = r.Spec.Selector
	case "job", "jobs", "job.batch":
		j := &batchv1.Job{}
		obj = j
		if err := c.Get(ctx, key, j); err != nil {
			return nil, eo.readError(c, err, args[0])
		}
		selector = j.Spec.Selector
	case "cronjob", "cronjobs", "cj", "cronjob.batch":
		cj := &batchv1.CronJob{}
		if err := c.Get(ctx, key, cj); err != nil {
			return nil, eo.readError(c, err, args[0])
		}
		var jobs batchv1.JobList
		if err := c.List(ctx, &jobs, client.InNamespace(ns)); err != nil {
			return nil, eo.readError(c, err, "jobs")
		}
		var out []*corev1.Pod
		for i := range jobs.Items {
			if ref := metav1.GetControllerOf(&jobs.Items[i]); ref == nil || ref.UID != cj.UID {
				continue
			}
			pods, err := eo.selected(ctx, c, ns, jobs.Items[i].Spec.Selector, &jobs.Items[i])
			if err != nil {
				return nil, err
			}
			out = append(out, pods...)
		}
		return out, nil
	default:
		return nil, usage("explain takes pod/, deploy/, sts/, ds/, rs/, job/ or cronjob/NAME, not %q", args[0])
	}
	return eo.selected(ctx, c, ns, selector, obj)
}

// selected lists the pods of a workload: those its selector matches that it controls (or,
// for a Deployment, whose ReplicaSet it controls).
func (eo *explainOptions) selected(ctx context.Context, c *cluster, ns string, ls *metav1.LabelSelector, owner client.Object) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil || sel.Empty() {
		sel = labels.Nothing()
	}
	var list corev1.PodList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, eo.readError(c, err, "pods")
	}
	owners := map[types.UID]bool{owner.GetUID(): true}
	if _, ok := owner.(*appsv1.Deployment); ok {
		var rss appsv1.ReplicaSetList
		if err := c.List(ctx, &rss, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, eo.readError(c, err, "replicasets")
		}
		for i := range rss.Items {
			if ref := metav1.GetControllerOf(&rss.Items[i]); ref != nil && ref.UID == owner.GetUID() {
				owners[rss.Items[i].UID] = true
			}
		}
	}
	var out []*corev1.Pod
	for i := range list.Items {
		if ref := metav1.GetControllerOf(&list.Items[i]); ref != nil && owners[ref.UID] {
			out = append(out, &list.Items[i])
		}
	}
	return out, nil
}

func (o *options) readError(c *cluster, err error, what string) error {
	switch {
	case apierrors.IsNotFound(err):
		return &exitError{code: ExitError, err: fmt.Errorf("%s not found", what)}
	case apierrors.IsForbidden(err):
		return &exitError{code: ExitError, err: fmt.Errorf("reading %s: %v", what, err)}
	}
	return o.clusterError(c.host, err)
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}
