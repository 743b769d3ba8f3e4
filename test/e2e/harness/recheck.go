package harness

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RestartWebhook stops pullgate and starts it again with args added to its usual ones
// (none: as the harness starts it).
func (e *Env) RestartWebhook(ctx context.Context, args ...string) error {
	e.StopWebhook()
	e.webhookArgs = args
	return e.StartWebhook(ctx)
}

// WebhookMetrics returns what the running pullgate's /metrics serves.
func (e *Env) WebhookMetrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.metricsAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// DeletePublicTag deletes repo:tag from the public registry, as `crane delete` would: the
// tag no longer resolves, the manifest stays under its digest.
func (e *Env) DeletePublicTag(ctx context.Context, repo, tag string) error {
	ref, err := name.NewTag(e.Public+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Delete(ref, remote.WithContext(ctx))
}

// AddFakeNode creates a Ready Node of arch without a kubelet and without the harness's
// taint, as a node pool of another architecture joining, and keeps its Lease renewed. Pods
// the scheduler or a DaemonSet puts on it stay Pending: nothing runs them. remove deletes it.
func (e *Env) AddFakeNode(ctx context.Context, nodeName, arch string) (remove func(), err error) {
	if err := fakeNode(ctx, e, nodeName, arch, false); err != nil {
		return nil, err
	}
	hbCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	go heartbeat(hbCtx, e, []string{nodeName})
	return func() {
		stop()
		delCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.Client.CoreV1().Nodes().Delete(delCtx, nodeName, metav1.DeleteOptions{})
		// Its pods are never run: remove them rather than wait for the pod GC.
		pods, err := e.Client.CoreV1().Pods("").List(delCtx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName})
		if err == nil {
			for _, p := range pods.Items {
				_ = e.Client.CoreV1().Pods(p.Namespace).Delete(delCtx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			}
		}
	}, nil
}

// MetricValue returns the value of the sample of /metrics text whose name and labels start
// with series (`name{label="v",...`), and whether there is one.
func MetricValue(metrics, series string) (string, bool) {
	for line := range strings.Lines(metrics) {
		if strings.HasPrefix(line, series) {
			f := strings.Fields(line)
			return f[len(f)-1], true
		}
	}
	return "", false
}
