package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// The -kyverno mode (issue 17): Kyverno's admission controller (v1.19.1, built by
// `make kyverno` into hack/tools/bin/kyverno) on the same envtest, registries and pods, with
// the policy a Kyverno user writes to check that every image of a pod exists: an
// imageRegistry context per container (foreach), denying when the lookup fails. It runs
// out of cluster as Kyverno supports it (--serverIP): its webhook controller registers its
// webhooks at https://127.0.0.1:PORT and marks the policy Ready, its certificate
// controller issues the serving certificate into the kyverno namespace, and the load
// generator POSTs the same AdmissionReviews to /validate/fail that it sends pullgate.

const kyvernoNamespace = "kyverno"

// kyvernoPolicy checks, for every container, init container and ephemeral container, that
// the image resolves in its registry: what pullgate's existence check checks.
const kyvernoPolicy = `apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: images-exist
spec:
  background: false
  webhookConfiguration:
    timeoutSeconds: 10
  rules:
  - name: image-exists
    match:
      any:
      - resources:
          kinds: [Pod]
    validate:
      failureAction: Enforce
      message: "an image of the pod cannot be found in its registry"
      foreach:
      - list: "request.object.spec.[ephemeralContainers, initContainers, containers][]"
        context:
        - name: image
          imageRegistry:
            reference: "{{ element.image }}"
        deny:
          conditions:
            any:
            - key: "{{ image.resolvedImage || '' }}"
              operator: Equals
              value: ""
`

// kyvernoProc is a running Kyverno admission controller.
type kyvernoProc struct {
	*webhookProc
	client *http.Client // trusts the CA Kyverno issued
}

// startKyverno installs Kyverno's CRDs and what its admission controller reads at start
// (namespace, Deployment), starts it, waits for its serving certificate and readiness, and
// applies kyvernoPolicy, waiting until Kyverno has it Ready.
func (b *bench) startKyverno(ctx context.Context) (*kyvernoProc, error) {
	bin, crds := b.s.KyvernoBinary, b.s.KyvernoCRDs
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kyverno binary: %w (build it with `make kyverno`)", err)
	}
	cfg := b.cluster.env.Config
	var paths []string
	for _, d := range []string{"kyverno", "policies.kyverno.io", "policyreport", "reports"} {
		if _, err := os.Stat(filepath.Join(crds, d)); err == nil {
			paths = append(paths, filepath.Join(crds, d))
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no Kyverno CRDs under %s", crds)
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true}); err != nil {
		return nil, fmt.Errorf("installing Kyverno's CRDs: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kyvernoNamespace}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	labels := map[string]string{"app.kubernetes.io/component": "admission-controller", "app.kubernetes.io/instance": "kyverno"}
	one := int32(1)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "kyverno-admission-controller", Namespace: kyvernoNamespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kyverno", Image: "reg.kyverno.io/kyverno/kyverno:v1.19.1"}}}}},
	}
	if _, err := cs.AppsV1().Deployments(kyvernoNamespace).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return nil, err
	}

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	p := &webhookProc{name: "kyverno", port: ports[0], metrics: ports[1], exited: make(chan struct{})}
	p.URL = fmt.Sprintf("https://127.0.0.1:%d/validate/fail", p.port)
	p.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", p.metrics)
	p.logFile, err = os.Create(filepath.Join(b.dir, "kyverno.log"))
	if err != nil {
		return nil, err
	}
	const svc = "kyverno-svc"
	p.cmd = exec.Command(bin,
		"--kubeconfig", b.cluster.Kubeconfig,
		"--serverIP", "127.0.0.1:"+strconv.Itoa(p.port),
		"--webhookServerHost", "127.0.0.1",
		"--webhookServerPort", strconv.Itoa(p.port),
		"--servicePort", strconv.Itoa(p.port),
		"--caSecretName", svc+".kyverno.svc.kyverno-tls-ca",
		"--tlsSecretName", svc+".kyverno.svc.kyverno-tls-pair",
		"--metricsPort", strconv.Itoa(p.metrics),
		"--profile=true", "--profileAddress", "127.0.0.1", "--profilePort", strconv.Itoa(ports[2]),
		"--controllerRuntimeMetricsAddress", "0",
		"--admissionReports=false",
		"--allowInsecureRegistry",
		"--enableConfigMapCaching=false",
		"--loggingFormat", "text",
	)
	p.cmd.Env = append(os.Environ(),
		"KYVERNO_NAMESPACE="+kyvernoNamespace,
		"KYVERNO_DEPLOYMENT=kyverno-admission-controller",
		"KYVERNO_POD_NAME=kyverno-admission-controller-bench",
		"KYVERNO_SVC="+svc,
		"KYVERNO_SERVICEACCOUNT_NAME=kyverno-admission-controller",
		"INIT_CONFIG=kyverno",
		"METRICS_CONFIG=kyverno-metrics",
	)
	p.cmd.Stdout, p.cmd.Stderr = p.logFile, p.logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.logFile.Close()
		return nil, fmt.Errorf("starting kyverno: %w", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	k := &kyvernoProc{webhookProc: p}
	fail := func(err error) (*kyvernoProc, error) {
		p.Stop()
		return nil, fmt.Errorf("%w; see %s", err, p.logFile.Name())
	}

	// Its CA, once its certificate controller has issued it.
	deadline := time.Now().Add(3 * time.Minute)
	var pool *x509.CertPool
	for pool == nil {
		if err := k.alive(ctx, deadline); err != nil {
			return fail(err)
		}
		s, err := cs.CoreV1().Secrets(kyvernoNamespace).Get(ctx, svc+".kyverno.svc.kyverno-tls-ca", metav1.GetOptions{})
		if err == nil && len(s.Data[corev1.TLSCertKey]) > 0 {
			pool = x509.NewCertPool()
			if !pool.AppendCertsFromPEM(s.Data[corev1.TLSCertKey]) {
				return fail(errors.New("kyverno's CA secret holds no PEM certificate"))
			}
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: b.s.Concurrency}
	k.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for {
		if err := k.alive(ctx, deadline); err != nil {
			return fail(err)
		}
		resp, err := k.client.Get(fmt.Sprintf("https://127.0.0.1:%d/health/readiness", p.port))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The policy, created as a user would (Kyverno's own webhook validates it), until Ready.
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(kyvernoPolicy), &obj); err != nil {
		return fail(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fail(err)
	}
	gvr := schema.GroupVersionResource{Group: "kyverno.io", Version: "v1", Resource: "clusterpolicies"}
	for {
		_, cerr := dyn.Resource(gvr).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
		if cerr == nil {
			break
		}
		if err := k.alive(ctx, deadline); err != nil {
			return fail(fmt.Errorf("creating the ClusterPolicy: %w (last: %v)", err, cerr))
		}
		time.Sleep(time.Second)
	}
	for {
		u, err := dyn.Resource(gvr).Get(ctx, "images-exist", metav1.GetOptions{})
		if err == nil && policyReady(u) {
			break
		}
		if err := k.alive(ctx, deadline); err != nil {
			return fail(fmt.Errorf("waiting for the ClusterPolicy to be Ready: %w", err))
		}
		time.Sleep(500 * time.Millisecond)
	}
	return k, nil
}

func policyReady(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// alive fails when the process exited, ctx ended or deadline passed.
func (k *kyvernoProc) alive(ctx context.Context, deadline time.Time) error {
	select {
	case <-k.exited:
		return errors.New("kyverno exited")
	default:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if time.Now().After(deadline) {
		return errors.New("kyverno not ready in time")
	}
	return nil
}

// measureKyverno is measureAt for Kyverno: its client, and its process's CPU and
// allocations only if its metrics have them.
func (b *bench) measureKyverno(ctx context.Context, k *kyvernoProc, concurrency int, bodies *bodySource, want expect, stop func(int64) bool) (measured, error) {
	b.takeRegistryCounts()
	allocBefore, cpuBefore, uerr := k.usage()
	selfBefore := selfCPUSeconds()
	ph := drive(ctx, k.client, k.URL, concurrency, bodies, want, stop)
	selfAfter := selfCPUSeconds()
	allocAfter, cpuAfter, uerr2 := k.usage()
	if ctx.Err() != nil {
		return measured{}, ctx.Err()
	}
	m := measured{phase: ph, selfCPU: selfAfter - selfBefore, registryReqs: b.takeRegistryCounts()}
	if uerr == nil && uerr2 == nil {
		m.allocBytes, m.cpuSeconds = allocAfter-allocBefore, cpuAfter-cpuBefore
	}
	return m, nil
}

// runKyverno runs Kyverno through the scenarios pullgate ran, after proving that its policy
// denies a pod whose image does not exist and admits the warm pod shape.
func (b *bench) runKyverno(ctx context.Context, rep *report) error {
	fmt.Println("kyverno: installing CRDs, starting the admission controller, applying the policy")
	start := time.Now()
	k, err := b.startKyverno(ctx)
	if err != nil {
		return err
	}
	defer k.Stop()
	fmt.Printf("kyverno: ready with the policy in %s\n", time.Since(start).Round(100*time.Millisecond))

	missing, err := newBodySource(withApp(b.shared, b.fast.Host+"/bench/does-not-exist:1.0"))
	if err != nil {
		return err
	}
	if ph := drive(ctx, k.client, k.URL, 1, missing, expect{allowed: false}, count(1)); ph.Errors > 0 || ph.Unexpected > 0 || len(ph.Latencies) != 1 {
		return fmt.Errorf("kyverno's policy did not deny a pod whose image does not exist (%d errors, %d unexpected answers; first: %s); see %s",
			ph.Errors, ph.Unexpected, ph.FirstOdd, k.logFile.Name())
	}
	fmt.Println("kyverno: the policy denies a pod whose image does not exist")
	warmBodies, err := newBodySource(b.shared)
	if err != nil {
		return err
	}
	if ph := drive(ctx, k.client, k.URL, b.s.Concurrency, warmBodies, expect{allowed: true}, until(time.Now().Add(2*time.Second))); ph.Errors > 0 || ph.Unexpected > 0 {
		return fmt.Errorf("kyverno on the warm pod shape: %d errors, %d unexpected answers; first: %s", ph.Errors, ph.Unexpected, ph.FirstOdd)
	}
	fmt.Println("kyverno: the policy admits the warm pod shape")

	var warm, serial []measured
	for r := range b.s.Rounds {
		fmt.Printf("kyverno round %d/%d: %s at concurrency %d, then %s one at a time\n", r+1, b.s.Rounds, b.s.Duration, b.s.Concurrency, b.s.Duration)
		m, err := b.measureKyverno(ctx, k, b.s.Concurrency, warmBodies, expect{allowed: true}, until(time.Now().Add(b.s.Duration)))
		if err != nil {
			return err
		}
		warm = append(warm, m)
		if m, err = b.measureKyverno(ctx, k, 1, warmBodies, expect{allowed: true}, until(time.Now().Add(b.s.Duration))); err != nil {
			return err
		}
		serial = append(serial, m)
	}
	rep.add("kyverno-warm", "Kyverno v1.19.1, imageRegistry policy; warm pod shape (Kyverno keeps no image cache: every admission asks the registry)", merge(warm), nil)
	rep.add("kyverno-warm-serial", "kyverno-warm, one request at a time", merge(serial), nil)
	for _, sc := range []struct {
		name, what string
		shapes     []podImages
	}{
		{"kyverno-cold", "as cold", shapes(b.shared, b.coldApps)},
		{"kyverno-latency-cold", "as latency-cold", shapes(b.sharedSlow, b.slowApps)},
		{"kyverno-burst", "as burst", []podImages{withApp(b.shared, b.burstApp)}},
		{"kyverno-latency-burst", "as latency-burst", []podImages{withApp(b.sharedSlow, b.slowBurstApp)}},
	} {
		n := b.s.ColdImages
		if len(sc.shapes) == 1 {
			n = b.s.Burst
		}
		fmt.Printf("%s: %d admissions\n", sc.name, n)
		bodies, err := newBodySource(sc.shapes...)
		if err != nil {
			return err
		}
		m, err := b.measureKyverno(ctx, k, b.s.Concurrency, bodies, expect{allowed: true}, count(n))
		if err != nil {
			return err
		}
		rep.add(sc.name, sc.what+", through Kyverno", m, nil)
	}
	return nil
}

// compareKyverno adds, for each scenario Kyverno ran, pullgate's ratios to it.
func (r *report) compareKyverno() {
	for _, pair := range [][2]string{{"warm", "kyverno-warm"}, {"warm-serial", "kyverno-warm-serial"}, {"cold", "kyverno-cold"},
		{"latency-cold", "kyverno-latency-cold"}, {"burst", "kyverno-burst"}, {"latency-burst", "kyverno-latency-burst"}} {
		pg, ky := r.scenario(pair[0]), r.scenario(pair[1])
		if pg == nil || ky == nil || ky.RPS == 0 || ky.P99 == 0 {
			continue
		}
		r.Targets = append(r.Targets, target{
			Target: pair[0] + ": ahead of Kyverno",
			Pass:   pg.RPS >= ky.RPS && pg.P99 <= ky.P99,
			Detail: fmt.Sprintf("adm/s %.0f vs %.0f = %.2f×; p99 %.2f vs %.2f ms = %.2f×; p50 %.2f vs %.2f ms",
				pg.RPS, ky.RPS, pg.RPS/ky.RPS, pg.P99, ky.P99, pg.P99/ky.P99, pg.P50, ky.P50),
		})
	}
}
