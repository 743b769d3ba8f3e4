package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// Outcome is what the kubelet made of a pod: it ran, or its image pull failed.
type Outcome struct {
	Pod  string
	Node string
	// Status is what `kubectl get pods` shows in STATUS: Running, Completed, ErrImagePull,
	// ImagePullBackOff, Pending…
	Status string
	// Ran is true once a container started (running, or exited 0 for a Job).
	Ran bool
	// PullError is the message of the kubelet's "Failed to pull image" event, if any.
	PullError string
	// Crash is how the last run of a container that failed ended (exit code, reason,
	// message): the pull worked, the program did not.
	Crash string
	// Images are the images of the pod's containers as stored (after any mutation).
	Images []string
}

// PullFailed reports whether the kubelet reported a failed pull and backs off.
func (o Outcome) PullFailed() bool {
	return o.PullError != "" && (o.Status == "ErrImagePull" || o.Status == "ImagePullBackOff")
}

// WaitOutcome waits until a pod labelled app=app in ns has run, or has failed to pull its image
// and is in ImagePullBackOff (the kubelet's back-off after ErrImagePull) with the kubelet's
// Failed event recorded. It returns the last state seen when time runs out.
func (e *Env) WaitOutcome(ctx context.Context, ns, app string, timeout time.Duration) (Outcome, error) {
	var last Outcome
	err := waitFor(ctx, timeout, func() bool {
		pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil || len(pods.Items) == 0 {
			return false
		}
		for i := range pods.Items {
			o := e.outcomeOf(ctx, &pods.Items[i])
			last = o
			if o.Ran || (o.PullFailed() && o.Status == "ImagePullBackOff") || o.Status == "CrashLoopBackOff" {
				return true
			}
		}
		return false
	})
	if err != nil {
		return last, fmt.Errorf("pods of app=%s in %s: no outcome in %s (last: %+v)", app, ns, timeout, last)
	}
	return last, nil
}

// WaitCrash waits until a pod labelled app=app in ns is in CrashLoopBackOff: its image was
// pulled and its container cannot run. WaitOutcome would take the moment the container runs,
// before it first exits, for a pod that ran.
func (e *Env) WaitCrash(ctx context.Context, ns, app string, timeout time.Duration) (Outcome, error) {
	var last Outcome
	err := waitFor(ctx, timeout, func() bool {
		pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false
		}
		for i := range pods.Items {
			if last = e.outcomeOf(ctx, &pods.Items[i]); last.Status == "CrashLoopBackOff" {
				return true
			}
		}
		return false
	})
	if err != nil {
		return last, fmt.Errorf("pods of app=%s in %s: none in CrashLoopBackOff in %s (last: %+v)", app, ns, timeout, last)
	}
	return last, nil
}

// WaitOutcomes is WaitOutcome for every pod labelled app=app in ns, once there are n of them
// (a DaemonSet's, one per real node): it returns when each has run or failed.
func (e *Env) WaitOutcomes(ctx context.Context, ns, app string, n int, timeout time.Duration) ([]Outcome, error) {
	var outs []Outcome
	err := waitFor(ctx, timeout, func() bool {
		pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil || len(pods.Items) < n {
			return false
		}
		outs = outs[:0]
		done := 0
		for i := range pods.Items {
			o := e.outcomeOf(ctx, &pods.Items[i])
			outs = append(outs, o)
			if o.Ran || (o.PullFailed() && o.Status == "ImagePullBackOff") || o.Status == "CrashLoopBackOff" {
				done++
			}
		}
		return done == len(pods.Items)
	})
	if err != nil {
		return outs, fmt.Errorf("pods of app=%s in %s: no outcome for all %d in %s (last: %+v)", app, ns, n, timeout, outs)
	}
	slices.SortFunc(outs, func(a, b Outcome) int { return strings.Compare(a.Node, b.Node) })
	return outs, nil
}

// WaitAllRunning waits until n pods labelled app=app in ns have run.
func (e *Env) WaitAllRunning(ctx context.Context, ns, app string, n int, timeout time.Duration) ([]Outcome, error) {
	var outs []Outcome
	err := waitFor(ctx, timeout, func() bool {
		pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false
		}
		outs = outs[:0]
		ran := 0
		for i := range pods.Items {
			o := e.outcomeOf(ctx, &pods.Items[i])
			outs = append(outs, o)
			if o.Ran {
				ran++
			}
		}
		return ran >= n
	})
	if err != nil {
		return outs, fmt.Errorf("%d pods of app=%s in %s did not run in %s (last: %+v)", n, app, ns, timeout, outs)
	}
	return outs, nil
}

func (e *Env) outcomeOf(ctx context.Context, pod *corev1.Pod) Outcome {
	o := Outcome{Pod: pod.Name, Node: pod.Spec.NodeName, Status: string(pod.Status.Phase)}
	for _, c := range pod.Spec.Containers {
		o.Images = append(o.Images, c.Image)
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, s := range statuses {
		if t := s.LastTerminationState.Terminated; t != nil && t.ExitCode != 0 {
			o.Crash = strings.TrimSpace(fmt.Sprintf("exit code %d, %s %s", t.ExitCode, t.Reason, t.Message))
		}
		switch {
		case s.State.Waiting != nil && s.State.Waiting.Reason != "":
			o.Status = s.State.Waiting.Reason
		case s.State.Running != nil:
			o.Ran = o.Crash == ""
		case s.State.Terminated != nil:
			o.Ran = s.State.Terminated.ExitCode == 0
			if o.Ran {
				o.Status = "Completed"
			}
		}
	}
	if pod.Status.Phase == corev1.PodSucceeded {
		o.Ran, o.Status = true, "Completed"
	}
	if !o.Ran {
		o.PullError = e.pullFailure(ctx, pod)
	}
	return o
}

// pullFailure returns the kubelet's last "Failed to pull image" event message for pod.
func (e *Env) pullFailure(ctx context.Context, pod *corev1.Pod) string {
	events, err := e.Client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": pod.Name, "reason": "Failed"}.String(),
	})
	if err != nil {
		return ""
	}
	msg := ""
	for _, ev := range events.Items {
		if ev.Source.Component == "kubelet" && strings.HasPrefix(ev.Message, "Failed to pull image") {
			msg = ev.Message
		}
	}
	return msg
}

// WaitServiceAccount waits until the controller manager made the "default" ServiceAccount of
// ns: until then the ServiceAccount admission plugin refuses the namespace's pods.
func (e *Env) WaitServiceAccount(ctx context.Context, ns string) error {
	return waitFor(ctx, 30*time.Second, func() bool {
		_, err := e.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
}

// ApplyIn runs `kubectl apply -f FILE` on a manifest with ${...} expanded and ${NS} set to
// ns, plus extra arguments. The expanded copy is written under Dir, so kubectl's messages name
// a file as they would for a user. A directory is applied as one (`kubectl apply -f dir/`),
// every file in it expanded.
func (e *Env) ApplyIn(ctx context.Context, ns, file string, extra ...string) (Result, error) {
	dir := filepath.Join(e.Dir, "manifests", ns)
	files := []string{file}
	target := filepath.Join(dir, filepath.Base(file))
	if fi, err := os.Stat(file); err == nil && fi.IsDir() {
		entries, err := os.ReadDir(file)
		if err != nil {
			return Result{}, err
		}
		files = files[:0]
		for _, en := range entries {
			files = append(files, filepath.Join(file, en.Name()))
		}
		dir = target
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Result{}, err
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return Result{}, err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(e.ExpandIn(ns, string(raw))), 0o600); err != nil {
			return Result{}, err
		}
	}
	return e.Kubectl(ctx, "", append([]string{"apply", "-f", target}, extra...)...), nil
}
