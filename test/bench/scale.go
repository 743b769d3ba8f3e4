package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The -scale mode (issue 17): how pullgate's memory, start-up and admission latency grow
// with what its informers cache. For each step it loads objects into envtest up to
// Secrets = N (the step), ServiceAccounts = N/5, Nodes = N/10, Namespaces = N/10 (50k
// Secrets → 10k ServiceAccounts, 5k Nodes, 5k Namespaces), then starts a fresh pullgate and
// measures: start-up until /readyz answers 200 (which waits for the informers' sync),
// VmRSS, the heap in use after a forced GC (go_memstats_heap_inuse_bytes after
// /debug/pprof/heap?gc=1), and the latency of warm admissions, one at a time and at
// -concurrency. The heap profile of each step is kept next to the results.

// scaleCounts are the objects of one kind loaded so far, or wanted.
type scaleCounts struct {
	Secrets, ServiceAccounts, Nodes, Namespaces int
}

func countsFor(secrets int) scaleCounts {
	return scaleCounts{Secrets: secrets, ServiceAccounts: secrets / 5, Nodes: secrets / 10, Namespaces: secrets / 10}
}

// scaleResult is one step's measurements.
type scaleResult struct {
	scaleCounts
	LoadSeconds  float64 `json:"loadSeconds"`
	ReadySeconds float64 `json:"readySeconds"`
	RSSMiB       float64 `json:"rssMiB"`
	HeapMiB      float64 `json:"heapInuseMiB"`
	Serial       stats   `json:"serial"`
	Concurrent   stats   `json:"concurrent"`
	HeapProfile  string  `json:"heapProfile"`
}

// scaleLoader creates objects in envtest with parallel clients.
type scaleLoader struct {
	cs     *kubernetes.Clientset
	have   scaleCounts
	blob   []byte // random bytes secrets' data is cut from
	labels map[string]string
}

func newScaleLoader(b *bench) (*scaleLoader, error) {
	cfg := *b.cluster.env.Config
	cfg.QPS, cfg.Burst = 1e6, 1e6
	// The API server warns about every TLS secret whose data is not a key pair; these are
	// random bytes of a key pair's size.
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		return nil, err
	}
	blob := make([]byte, 64<<10)
	_, _ = rand.Read(blob)
	return &scaleLoader{cs: cs, blob: blob, labels: map[string]string{
		"app.kubernetes.io/name": "shop", "app.kubernetes.io/instance": "shop-prod",
		"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "shop-4.2.1",
	}}, nil
}

// parallel runs create(i) for i in [from, to) on 32 workers and returns the first error.
func parallel(ctx context.Context, from, to int, create func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	next.Store(int64(from))
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to || ctx.Err() != nil {
					return
				}
				if err := create(ctx, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

func nsName(i int) string { return fmt.Sprintf("team-%05d", i) }

// load creates objects until want is reached.
func (l *scaleLoader) load(ctx context.Context, want scaleCounts) error {
	cv := l.cs.CoreV1()
	if err := parallel(ctx, l.have.Namespaces, want.Namespaces, func(ctx context.Context, i int) error {
		_, err := cv.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(i),
			Labels: map[string]string{"team": strconv.Itoa(i % 97), "kubernetes.io/metadata.name": nsName(i)}}}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("creating namespaces: %w", err)
	}
	l.have.Namespaces = want.Namespaces
	ns := func(i int) string {
		if l.have.Namespaces == 0 {
			return benchNamespace
		}
		return nsName(i % l.have.Namespaces)
	}
	if err := parallel(ctx, l.have.Nodes, want.Nodes, func(ctx context.Context, i int) error {
		_, err := cv.Nodes().Create(ctx, l.node(i), metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("creating nodes: %w", err)
	}
	l.have.Nodes = want.Nodes
	if err := parallel(ctx, l.have.Secrets, want.Secrets, func(ctx context.Context, i int) error {
		_, err := cv.Secrets(ns(i)).Create(ctx, l.secret(i), metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("creating secrets: %w", err)
	}
	l.have.Secrets = want.Secrets
	if err := parallel(ctx, l.have.ServiceAccounts, want.ServiceAccounts, func(ctx context.Context, i int) error {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sa-%05d", i), Labels: l.labels,
			Annotations: map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/shop-" + strconv.Itoa(i)}}}
		if i%3 == 0 {
			sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: fmt.Sprintf("secret-%05d", i)}}
		}
		_, err := cv.ServiceAccounts(ns(i)).Create(ctx, sa, metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("creating service accounts: %w", err)
	}
	l.have.ServiceAccounts = want.ServiceAccounts
	return nil
}

// cut returns n random bytes, base64-encoded when b64 (as certificates and Helm releases
// are text).
func (l *scaleLoader) cut(i, n int, b64 bool) []byte {
	off := (i * 7919) % (len(l.blob) - n)
	raw := l.blob[off : off+n]
	if !b64 {
		return bytes.Clone(raw)
	}
	return []byte(base64.StdEncoding.EncodeToString(raw))
}

// secret i is of a type and size as found in clusters: a fifth docker config (1–3
// registries), Opaque application secrets (0.5–4 KB), TLS pairs (~3.5 KB), Helm release
// records (~16 KB) and legacy ServiceAccount tokens; a third of those not from Helm carry
// kubectl's last-applied configuration.
func (l *scaleLoader) secret(i int) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("secret-%05d", i), Labels: l.labels}}
	switch i % 20 {
	case 0, 1, 2, 3: // 20 %: docker config json
		auths := map[string]any{}
		for r := range 1 + i%3 {
			auths[fmt.Sprintf("registry-%d.example.com", (i+r)%50)] = map[string]string{
				"auth": base64.StdEncoding.EncodeToString(append([]byte("robot$shop:"), l.cut(i+r, 48, true)...))}
		}
		cfg, _ := json.Marshal(map[string]any{"auths": auths})
		s.Type, s.Data = corev1.SecretTypeDockerConfigJson, map[string][]byte{corev1.DockerConfigJsonKey: cfg}
	case 4: // 5 %: legacy .dockercfg
		cfg, _ := json.Marshal(map[string]any{fmt.Sprintf("registry-%d.example.com", i%50): map[string]string{
			"auth": base64.StdEncoding.EncodeToString(append([]byte("ci:"), l.cut(i, 32, true)...))}})
		s.Type, s.Data = corev1.SecretTypeDockercfg, map[string][]byte{corev1.DockerConfigKey: cfg}
	case 5, 6, 7, 8, 9, 10, 11: // 35 %: Opaque
		s.Type = corev1.SecretTypeOpaque
		s.Data = map[string][]byte{"password": l.cut(i, 32, false), "config.yaml": l.cut(i, 512+(i%8)*450, true)}
	case 12, 13, 14, 15, 16: // 25 %: TLS
		s.Type = corev1.SecretTypeTLS
		s.Data = map[string][]byte{corev1.TLSCertKey: l.cut(i, 1600, true), corev1.TLSPrivateKeyKey: l.cut(i+1, 1200, true), "ca.crt": l.cut(i+2, 900, true)}
	case 17, 18: // 10 %: Helm release records
		s.Type = "helm.sh/release.v1"
		s.Labels = map[string]string{"owner": "helm", "name": "shop", "status": "superseded", "version": strconv.Itoa(i % 10)}
		s.Data = map[string][]byte{"release": l.cut(i, 12<<10, true)}
	default: // 5 %: ServiceAccount token (legacy)
		s.Type = corev1.SecretTypeOpaque // the token controller is not running in envtest
		s.Annotations = map[string]string{corev1.ServiceAccountNameKey: "default"}
		s.Data = map[string][]byte{"token": l.cut(i, 700, true), "ca.crt": l.cut(i+3, 900, true), "namespace": []byte("shop")}
	}
	if i%3 == 0 && s.Type != "helm.sh/release.v1" {
		// A third were created by `kubectl apply`, which keeps a copy of the whole object.
		last, _ := json.Marshal(s)
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[corev1.LastAppliedConfigAnnotation] = string(last)
	}
	return s
}

// node i is a Ready linux node as the kubelet reports it: labels, annotations, capacity,
// conditions, addresses and the 50 images the kubelet lists by default.
func (l *scaleLoader) node(i int) *corev1.Node {
	name := fmt.Sprintf("ip-10-%d-%d-%d.ec2.internal", i/65536%256, i/256%256, i%256)
	arch := []string{"amd64", "arm64"}[i%2]
	now := metav1.Now()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{
				corev1.LabelOSStable: "linux", corev1.LabelArchStable: arch, corev1.LabelHostname: name,
				"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch,
				corev1.LabelInstanceTypeStable: "m6i.2xlarge", corev1.LabelTopologyRegion: "us-east-1",
				corev1.LabelTopologyZone: "us-east-1" + string(rune('a'+i%3)), "node.kubernetes.io/pool": "general-" + strconv.Itoa(i%4),
			},
			Annotations: map[string]string{
				"node.alpha.kubernetes.io/ttl":                           "0",
				"volumes.kubernetes.io/controller-managed-attach-detach": "true",
				"csi.volume.kubernetes.io/nodeid":                        fmt.Sprintf(`{"ebs.csi.aws.com":"i-%017x"}`, i),
			},
		},
		Spec: corev1.NodeSpec{ProviderID: fmt.Sprintf("aws:///us-east-1a/i-%017x", i), PodCIDR: fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256)},
	}
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi")}
	n.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.0.%d.%d", i/256%256, i%256)}, {Type: corev1.NodeHostName, Address: name}},
		NodeInfo: corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: arch, KubeletVersion: "v1.35.0",
			ContainerRuntimeVersion: "containerd://2.1.4", OSImage: "Amazon Linux 2023", KernelVersion: "6.1.0"},
	}
	for _, c := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeReady} {
		st := corev1.ConditionFalse
		if c == corev1.NodeReady {
			st = corev1.ConditionTrue
		}
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: c, Status: st, LastHeartbeatTime: now, LastTransitionTime: now, Reason: "Kubelet" + string(c), Message: "kubelet reports " + string(c)})
	}
	for k := range 50 {
		repo := fmt.Sprintf("123456789012.dkr.ecr.us-east-1.amazonaws.com/team-%d/service-%d", (i+k)%40, (i*3+k)%200)
		digest := fmt.Sprintf("sha256:%064x", (i+1)*1000+k)
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{repo + "@" + digest, repo + ":v" + strconv.Itoa(k)}, SizeBytes: int64(50+k) << 20})
	}
	return n
}

// runScale runs the scale steps and writes their table.
func (b *bench) runScale(ctx context.Context) error {
	var steps []int
	for f := range strings.SplitSeq(b.s.Scale, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return fmt.Errorf("-scale: %q is not a count of secrets", f)
		}
		steps = append(steps, n)
	}
	l, err := newScaleLoader(b)
	if err != nil {
		return err
	}
	profDir := strings.TrimSuffix(b.s.Out, filepath.Ext(b.s.Out)) + "-scale"
	if err := os.MkdirAll(profDir, 0o755); err != nil {
		return err
	}
	cfg := b.pullgate
	cfg.pprof = true
	var results []scaleResult
	for _, n := range steps {
		want := countsFor(n)
		start := time.Now()
		if err := l.load(ctx, want); err != nil {
			return err
		}
		r := scaleResult{scaleCounts: l.have, LoadSeconds: time.Since(start).Seconds()}
		fmt.Printf("loaded %+v in %.0fs\n", l.have, r.LoadSeconds)

		start = time.Now()
		p, err := startWebhookWithin(ctx, "pullgate", cfg, 5*time.Minute)
		if err != nil {
			return err
		}
		r.ReadySeconds = time.Since(start).Seconds()
		err = b.measureScale(ctx, p, &r, filepath.Join(profDir, fmt.Sprintf("heap-%d.pprof", n)))
		p.Stop()
		if err != nil {
			return err
		}
		fmt.Printf("  ready in %.2fs, RSS %.1f MiB, heap in use %.1f MiB; serial p50 %.2f p99 %.2f ms; at %d p50 %.2f p99 %.2f ms\n",
			r.ReadySeconds, r.RSSMiB, r.HeapMiB, r.Serial.P50, r.Serial.P99, b.s.Concurrency, r.Concurrent.P50, r.Concurrent.P99)
		results = append(results, r)
	}
	return writeScale(b, results, profDir)
}

func (b *bench) measureScale(ctx context.Context, p *webhookProc, r *scaleResult, heapFile string) error {
	if err := p.calibrate(); err != nil {
		return err
	}
	if err := b.warmUp(ctx, p, b.shared); err != nil {
		return err
	}
	bodies, err := newBodySource(b.shared)
	if err != nil {
		return err
	}
	serial, err := b.measureAt(ctx, 1, p, bodies, expect{allowed: true}, count(1000))
	if err != nil {
		return err
	}
	conc, err := b.measureAt(ctx, b.s.Concurrency, p, bodies, expect{allowed: true}, count(4000))
	if err != nil {
		return err
	}
	for _, m := range []measured{serial, conc} {
		if m.Errors > 0 || m.Unexpected > 0 {
			return fmt.Errorf("admissions at scale: %d errors, %d unexpected; first: %s", m.Errors, m.Unexpected, m.FirstOdd)
		}
	}
	r.Serial, r.Concurrent = summarize(serial.Latencies, serial.Elapsed), summarize(conc.Latencies, conc.Elapsed)
	// The heap profile with gc=1 forces a collection first, so heap in use is what is live.
	r.HeapProfile = heapFile
	if err := p.profile(ctx, "heap?gc=1", heapFile); err != nil {
		return err
	}
	m, err := p.scrape()
	if err != nil {
		return err
	}
	r.HeapMiB = round2(m["go_memstats_heap_inuse_bytes"] / (1 << 20))
	rss, err := vmRSS(p.cmd.Process.Pid)
	if err != nil {
		return err
	}
	r.RSSMiB = round2(rss / (1 << 20))
	return nil
}

// vmRSS reads /proc/PID/status's VmRSS in bytes.
func vmRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func writeScale(b *bench, results []scaleResult, profDir string) error {
	var md strings.Builder
	fmt.Fprintf(&md, "| Secrets | ServiceAccounts | Nodes | Namespaces | load s | ready s | RSS MiB | heap in use MiB | serial p50 ms | serial p99 ms | at %d adm/s | at %d p99 ms |\n", b.s.Concurrency, b.s.Concurrency)
	md.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Fprintf(&md, "| %d | %d | %d | %d | %.0f | %.2f | %.1f | %.1f | %.2f | %.2f | %.0f | %.2f |\n",
			r.Secrets, r.ServiceAccounts, r.Nodes, r.Namespaces, r.LoadSeconds, r.ReadySeconds, r.RSSMiB, r.HeapMiB,
			r.Serial.P50, r.Serial.P99, r.Concurrent.RPS, r.Concurrent.P99)
	}
	if len(results) > 0 {
		last := results[len(results)-1]
		if out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", "-sample_index=inuse_space", last.HeapProfile).Output(); err == nil {
			fmt.Fprintf(&md, "\nHeap in use at the last step (`go tool pprof -top -sample_index=inuse_space %s`):\n\n```\n%s```\n", last.HeapProfile, out)
		}
	}
	fmt.Print(md.String())
	js, err := json.MarshalIndent(map[string]any{"commit": b.commit, "machine": machineInfo(b.loadAtStart), "load1AtEnd": loadAverage()[0], "steps": results}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(profDir, "scale.json"), js, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(profDir, "scale.md"), []byte(md.String()), 0o644)
}
