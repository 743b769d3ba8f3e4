//go:build e2e

// Package realnode installs pullgate for real on the e2e's real cluster (two kubelets,
// containerd 1.6 and 2.4): its image built without Docker and pulled by the kubelet from the
// in-cluster registry, cert-manager issuing its certificate and injecting the CA, the API
// server reaching it through its Service's endpoints, and then upgraded, restarted and
// drained while pods are created continuously, counting what failed open or was denied
// wrongly. Run with `make e2e` (root; the binaries of `make tools`).
package realnode

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullgate/pullgate/test/e2e/harness"
)

var env *harness.Env

func TestMain(m *testing.M) {
	harness.RunReaperIfAsked()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	start := time.Now()
	var err error
	env, err = harness.Start(ctx, harness.Options{InstallOnly: true})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the cluster:", err)
		os.Exit(1)
	}
	fmt.Printf("cluster up in %s (logs: %s)\n", time.Since(start).Round(time.Millisecond), env.LogFile())
	code := m.Run()
	if code != 0 {
		if logs, err := os.ReadFile(env.LogFile()); err == nil && len(logs) > 12<<10 {
			fmt.Fprintf(os.Stderr, "---- component logs (last 12 KiB) ----\n%s\n", logs[len(logs)-12<<10:])
		}
	}
	env.Stop()
	os.Exit(code)
}

func kubectl(t *testing.T, stdin string, args ...string) harness.Result {
	t.Helper()
	r := env.Kubectl(t.Context(), stdin, args...)
	t.Logf("$ kubectl %s → exit %d\n%s", strings.Join(args, " "), r.ExitCode, r.Output())
	return r
}

func mustKubectl(t *testing.T, stdin string, args ...string) harness.Result {
	t.Helper()
	r := kubectl(t, stdin, args...)
	if r.ExitCode != 0 {
		t.Fatalf("kubectl %s failed", strings.Join(args, " "))
	}
	return r
}

func helm(t *testing.T, args ...string) harness.Result {
	t.Helper()
	start := time.Now()
	r := env.Helm(t.Context(), args...)
	t.Logf("$ helm %s → exit %d in %s\n%s", strings.Join(args, " "), r.ExitCode, time.Since(start).Round(100*time.Millisecond), r.Output())
	if r.ExitCode != 0 {
		t.Fatalf("helm %s failed", args[0])
	}
	return r
}

const denied = `admission webhook "pullgate-validate.pullgate.io" denied the request`

// chartValues are the values every install here uses: the image from the in-cluster
// registry, and a policy that may dial it (a private address, plain HTTP).
func chartValues(tag string) []string {
	reg := env.InClusterRegistry()
	values := []string{
		"--set", "image.repository=" + reg + "/pullgate", "--set", "image.tag=" + tag,
		"--set", "policy.registries.allowPrivateNetworks=true",
		"--set-json", fmt.Sprintf(`policy.registries.insecure=[%q]`, reg),
	}
	// To measure without the drain delay (what the chart had before it): E2E_SHUTDOWN_DELAY=0s.
	if d := os.Getenv("E2E_SHUTDOWN_DELAY"); d != "" {
		values = append(values, "--set", "webhook.shutdownDelay="+d)
	}
	return values
}

func deployment(name, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: app, image: %[2]q}]
`, name, image)
}

// TestInstallWithCertManager is the whole story on one install: helm install with
// cert-manager, the checks a user makes, then an upgrade, a restart and a drain under load.
func TestInstallWithCertManager(t *testing.T) {
	uninstall(t) // whatever an earlier test left installed
	ctx := t.Context()
	v1, err := env.BuildImage(ctx, "v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := env.BuildImage(ctx, "v0.2.0")
	if err != nil {
		t.Fatal(err)
	}
	good, err := env.PushInCluster(ctx, "shop/web:1.0", "linux/amd64", "linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	bad := env.InClusterRegistry() + "/shop/web:0.0-missing"
	if err := env.StartCertManager(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("images %s and %s built and pushed; cert-manager running", v1, v2)

	start := time.Now()
	helm(t, append([]string{"install", "pullgate", harness.RepoRoot() + "/charts/pullgate",
		"-n", "pullgate", "--create-namespace", "--wait", "--timeout", "5m"}, chartValues("v0.1.0")...)...)
	installed := time.Since(start)
	mustKubectl(t, "", "get", "pods,pdb,certificate", "-n", "pullgate", "-o", "wide")

	t.Run("two replicas Running and Ready, behind a PDB", func(t *testing.T) {
		d, err := env.Client.AppsV1().Deployments("pullgate").Get(ctx, "pullgate", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.ReadyReplicas != 2 {
			t.Errorf("%d ready replicas, want 2", d.Status.ReadyReplicas)
		}
		pdb, err := env.Client.PolicyV1().PodDisruptionBudgets("pullgate").Get(ctx, "pullgate", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pdb.Status.DisruptionsAllowed != 1 {
			t.Errorf("the PDB allows %d disruptions, want 1", pdb.Status.DisruptionsAllowed)
		}
	})
	t.Run("the webhook configurations carry the CA cert-manager issued", func(t *testing.T) {
		secret, err := env.Client.CoreV1().Secrets("pullgate").Get(ctx, "pullgate-ca", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ca := secret.Data["ca.crt"]
		v, err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "pullgate", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range v.Webhooks {
			if len(ca) == 0 || string(w.ClientConfig.CABundle) != string(ca) {
				t.Errorf("webhook %s: caBundle (%d bytes) is not the CA of secret pullgate-ca (%d bytes)", w.Name, len(w.ClientConfig.CABundle), len(ca))
			}
			if w.ClientConfig.Service == nil {
				t.Errorf("webhook %s is not called through the Service", w.Name)
			}
		}
	})
	if env.Kubectl(ctx, "", "get", "namespace", "shop").ExitCode != 0 {
		mustKubectl(t, "", "create", "namespace", "shop")
	}
	if err := env.WaitServiceAccount(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	t.Run("a bad tag is rejected at kubectl apply, through the Service", func(t *testing.T) {
		r := kubectl(t, deployment("web-bad", bad), "apply", "-f", "-")
		if r.ExitCode == 0 || !strings.Contains(r.Output(), denied) || !strings.Contains(r.Output(), "[TagNotFound]") {
			t.Errorf("kubectl apply of a bad tag: exit %d, want a TagNotFound denial", r.ExitCode)
		}
	})
	t.Run("a good image runs", func(t *testing.T) {
		mustKubectl(t, deployment("web", good), "apply", "-f", "-")
		if _, err := env.WaitAllRunning(ctx, "shop", "web", 1, 2*time.Minute); err != nil {
			t.Error(err)
		}
	})
	t.Logf("helm install → pullgate Ready in %s", installed.Round(100*time.Millisecond))

	mustKubectl(t, "", "create", "namespace", "load")
	if err := env.WaitServiceAccount(ctx, "load"); err != nil {
		t.Fatal(err)
	}
	disruptions := []struct {
		name string
		do   func(t *testing.T)
	}{
		{"helm upgrade to v0.2.0", func(t *testing.T) {
			helm(t, append([]string{"upgrade", "pullgate", harness.RepoRoot() + "/charts/pullgate",
				"-n", "pullgate", "--wait", "--timeout", "5m"}, chartValues("v0.2.0")...)...)
		}},
		{"kubectl rollout restart", func(t *testing.T) {
			mustKubectl(t, "", "rollout", "restart", "deployment/pullgate", "-n", "pullgate")
			mustKubectl(t, "", "rollout", "status", "deployment/pullgate", "-n", "pullgate", "--timeout=5m")
		}},
		{"kubectl drain of a node holding a replica", func(t *testing.T) {
			pods, err := env.Client.CoreV1().Pods("pullgate").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=pullgate"})
			if err != nil || len(pods.Items) == 0 {
				t.Fatalf("listing pullgate's pods: %v", err)
			}
			node := pods.Items[0].Spec.NodeName
			mustKubectl(t, "", "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=5m")
			mustKubectl(t, "", "uncordon", node)
			mustKubectl(t, "", "rollout", "status", "deployment/pullgate", "-n", "pullgate", "--timeout=5m")
		}},
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n%-45s | %9s | %9s | %12s | %14s | %s\n", "disruption", "creations", "admitted", "failed open", "wrongly denied", "other errors")
	for _, d := range disruptions {
		t.Run(d.name, func(t *testing.T) {
			l := startLoad(ctx, good, bad)
			d.do(t)
			time.Sleep(5 * time.Second) // and a little after
			s := l.stop()
			fmt.Fprintf(&report, "%-45s | %9d | %9d | %12d | %14d | %d %s\n", d.name, s.created, s.admitted, s.failedOpen, s.wronglyDenied, s.otherErrors, s.firstError)
			if s.failedOpen != 0 || s.wronglyDenied != 0 {
				t.Errorf("%s: %d admissions failed open, %d were denied wrongly (of %d)", d.name, s.failedOpen, s.wronglyDenied, s.created)
			}
		})
	}
	t.Log(report.String())
}

// load creates pods continuously, 20 a second, half of an image that exists (pullgate must
// admit them) and half of a tag that does not (pullgate must deny them: one admitted means the
// API server failed open). The pods carry a scheduling gate: they are admitted and stored,
// never run.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stats  loadStats
}

// podSeq numbers the load's pods across loads.
var podSeq atomic.Int64

type loadStats struct {
	created, admitted, failedOpen, wronglyDenied, otherErrors int64
	firstError                                                string
}

func startLoad(ctx context.Context, good, bad string) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel}
	var mu sync.Mutex
	l.wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n := podSeq.Add(1)
			image, wantAdmit := good, true
			if n%2 == 0 {
				image, wantAdmit = bad, false
			}
			l.wg.Go(func() {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("load-%06d", n), Namespace: "load"},
					Spec: corev1.PodSpec{
						Containers:      []corev1.Container{{Name: "app", Image: image}},
						SchedulingGates: []corev1.PodSchedulingGate{{Name: "pullgate.io/e2e-never"}},
					},
				}
				_, err := env.Client.CoreV1().Pods("load").Create(context.Background(), pod, metav1.CreateOptions{})
				mu.Lock()
				defer mu.Unlock()
				l.stats.created++
				switch {
				case err == nil && wantAdmit:
					l.stats.admitted++
				case err == nil:
					l.stats.failedOpen++
				case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "pullgate") && !wantAdmit:
				case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "pullgate"):
					l.stats.wronglyDenied++
					if l.stats.firstError == "" {
						l.stats.firstError = err.Error()
					}
				default:
					l.stats.otherErrors++
					if l.stats.firstError == "" {
						l.stats.firstError = err.Error()
					}
				}
			})
		}
	})
	return l
}

func (l *load) stop() loadStats {
	l.cancel()
	l.wg.Wait()
	return l.stats
}

// uninstall removes the release of an earlier test and its namespace (with what cert-manager
// left there: its Secrets are not the release's), and waits for them to go.
func uninstall(t *testing.T) {
	t.Helper()
	if env.Helm(t.Context(), "status", "pullgate", "-n", "pullgate").ExitCode == 0 {
		helm(t, "uninstall", "pullgate", "-n", "pullgate", "--wait", "--timeout", "2m")
	}
	if env.Kubectl(t.Context(), "", "get", "namespace", "pullgate").ExitCode == 0 {
		mustKubectl(t, "", "delete", "namespace", "pullgate", "--wait=true", "--timeout=2m")
	}
}

// checkRejectsAndRuns is what a user tries after an install: a bad tag refused at kubectl
// apply, a good image running.
func checkRejectsAndRuns(t *testing.T, prefix string) {
	t.Helper()
	ctx := t.Context()
	good, err := env.PushInCluster(ctx, "shop/web:1.0", "linux/amd64", "linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	if env.Kubectl(ctx, "", "get", "namespace", "shop").ExitCode != 0 {
		mustKubectl(t, "", "create", "namespace", "shop")
	}
	if err := env.WaitServiceAccount(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	// The API server may take a moment to pick up a new webhook configuration.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := env.Kubectl(ctx, deployment(prefix+"-bad", env.InClusterRegistry()+"/shop/web:0.0-missing"), "apply", "-f", "-", "--dry-run=server")
		if r.ExitCode != 0 && strings.Contains(r.Output(), denied) && strings.Contains(r.Output(), "[TagNotFound]") {
			t.Logf("a bad tag is rejected:\n%s", r.Output())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a bad tag was not rejected: exit %d\n%s", r.ExitCode, r.Output())
		}
		time.Sleep(time.Second)
	}
	mustKubectl(t, deployment(prefix+"-good", good), "apply", "-f", "-")
	if _, err := env.WaitAllRunning(ctx, "shop", prefix+"-good", 1, 2*time.Minute); err != nil {
		t.Error(err)
	}
}

// TestInstallWithoutCertManager follows the chart README's route without cert-manager: a CA
// and a serving certificate made with openssl, the certificate in a Secret, the CA given as
// webhook.caBundle.
func TestInstallWithoutCertManager(t *testing.T) {
	uninstall(t)
	ctx := t.Context()
	if _, err := env.BuildImage(ctx, "v0.1.0"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := `set -e
NS=pullgate SVC=pullgate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj "/CN=pullgate-ca" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=${SVC}.${NS}.svc" -keyout tls.key -out tls.csr 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
  "$SVC" "$SVC" "$NS" "$SVC" "$NS" "$SVC" "$NS" > san.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
  -extfile san.ext -out tls.crt 2>/dev/null
`
	if out, err := runIn(dir, "bash", "-c", script); err != nil {
		t.Fatalf("making the certificates: %v\n%s", err, out)
	}
	if env.Kubectl(ctx, "", "get", "namespace", "pullgate").ExitCode != 0 {
		mustKubectl(t, "", "create", "namespace", "pullgate")
	}
	mustKubectl(t, "", "-n", "pullgate", "create", "secret", "tls", "pullgate-tls", "--cert="+dir+"/tls.crt", "--key="+dir+"/tls.key")
	ca, err := os.ReadFile(dir + "/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	helm(t, append([]string{"install", "pullgate", harness.RepoRoot() + "/charts/pullgate", "-n", "pullgate", "--wait", "--timeout", "5m",
		"--set", "certManager.enabled=false", "--set", "tls.secretName=pullgate-tls",
		"--set", "webhook.caBundle=" + base64.StdEncoding.EncodeToString(ca)}, chartValues("v0.1.0")...)...)
	checkRejectsAndRuns(t, "nocm")
	uninstall(t)
}

// TestApplyKustomize installs deploy/ with `kubectl apply -k`, through an overlay that sets
// what a user's would: the image, and the policy for the in-cluster registry. cert-manager
// (started by TestInstallWithCertManager, or here) issues the certificate.
func TestApplyKustomize(t *testing.T) {
	uninstall(t)
	ctx := t.Context()
	if _, err := env.BuildImage(ctx, "v0.1.0"); err != nil {
		t.Fatal(err)
	}
	if err := env.StartCertManager(ctx); err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	base, err := filepath.Rel(overlay, filepath.Join(harness.RepoRoot(), "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	reg := env.InClusterRegistry()
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [%q]
images:
- {name: ghcr.io/pullgate/pullgate, newName: %q, newTag: v0.1.0}
patches:
- target: {kind: ConfigMap, name: pullgate-policy}
  patch: |
    - op: replace
      path: /data/policy.yaml
      value: |
        registries:
          allowPrivateNetworks: true
          insecure: [%q]
`, base, reg+"/pullgate", reg)
	if err := os.WriteFile(overlay+"/kustomization.yaml", []byte(kustomization), 0o600); err != nil {
		t.Fatal(err)
	}
	mustKubectl(t, "", "apply", "-k", overlay)
	mustKubectl(t, "", "-n", "pullgate", "rollout", "status", "deployment/pullgate", "--timeout=5m")
	checkRejectsAndRuns(t, "kustomize")
	mustKubectl(t, "", "delete", "-k", overlay, "--wait=true", "--timeout=2m")
}

func runIn(dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}
