package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pullgate/pullgate/internal/testcerts"
)

// bench is everything the scenarios run against.
type bench struct {
	s                settings
	dir              string
	fast, slow, hang *benchRegistry
	cluster          *cluster
	client           *http.Client
	pullgate         procConfig
	baselineProc     *webhookProc

	// shared are the images every pod shape has besides the one a scenario varies, on the
	// loopback registry and on the slow one.
	shared, sharedSlow podImages
	coldApps           []string // new images on the loopback registry
	slowApps           []string // new images on the slow registry
	burstApp           string   // one new single-arch image on the loopback registry
	slowBurstApp       string   // the same on the slow registry
	burstIndexApp      string   // one new multi-arch image on the loopback registry
	slowBurstIndexApp  string   // the same on the slow registry
	hangApps           []string
	rttFast, rttSlow   time.Duration
	// loadAtStart is the load average when the run began, before anything was started.
	loadAtStart [3]float64
	// commit is the git commit pullgate was built from ("+dirty" with local changes to it).
	commit string
}

const (
	burstRepo      = "burst/checkout"
	burstIndexRepo = "burst/gateway"
	hangImgs       = 10
)

func newBench(ctx context.Context, s settings, root, dir string) (_ *bench, err error) {
	b := &bench{s: s, dir: dir, commit: gitCommit(ctx, root)}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	certDir := filepath.Join(dir, "certs")
	ca, err := testcerts.NewCA("pullgate-bench-ca")
	if err != nil {
		return nil, err
	}
	if err := ca.WriteServing(certDir); err != nil {
		return nil, err
	}
	b.client = newClient(ca.Pool(), s.Concurrency)

	bin := filepath.Join(dir, "bin")
	pullgateBin, baselineBin := filepath.Join(bin, "pullgate"), filepath.Join(bin, "baseline")
	if err := buildBinary(ctx, root, "./cmd/webhook", pullgateBin); err != nil {
		return nil, err
	}
	if err := buildBinary(ctx, root, "./test/bench/baseline", baselineBin); err != nil {
		return nil, err
	}

	b.fast = newBenchRegistry(0)
	b.slow = newBenchRegistry(s.Latency)
	b.hang = newBenchRegistry(0)
	b.hang.hang.Store(true)
	if err := b.pushImages(ctx); err != nil {
		return nil, err
	}
	if b.rttFast, err = b.fast.roundTrip(ctx, b.shared.App); err != nil {
		return nil, err
	}
	if b.rttSlow, err = b.slow.roundTrip(ctx, b.sharedSlow.App); err != nil {
		return nil, err
	}

	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "hack", "tools", "bin")
	}
	b.cluster, err = startCluster(ctx, assets, dir, []string{b.fast.Host, b.slow.Host, b.hang.Host})
	if err != nil {
		return nil, err
	}

	policyFile := filepath.Join(dir, "policy.yaml")
	policy := fmt.Sprintf("registries:\n  allowLoopback: true\nlookupTimeout: %s\n", s.LookupTimeout)
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		return nil, err
	}
	common := procConfig{certDir: certDir, kubeconfig: b.cluster.Kubeconfig, logDir: dir, pprof: s.CPUProfile != ""}
	if s.CPUProfile != "" {
		if err := os.MkdirAll(s.CPUProfile, 0o755); err != nil {
			return nil, err
		}
	}
	b.pullgate = common
	b.pullgate.binary, b.pullgate.extra = pullgateBin, []string{"--policy-file", policyFile}
	base := common
	base.binary = baselineBin
	if b.baselineProc, err = startWebhook(ctx, "baseline", base); err != nil {
		return nil, err
	}
	return b, nil
}

// pushImages pushes every image the scenarios name. Single-platform images are
// linux/amd64 (the pods select amd64 nodes); the proxy and every fifth new image are
// linux/amd64+linux/arm64 indexes; references mix tags, digests and tag@digest.
func (b *bench) pushImages(ctx context.Context) error {
	sharedOn := func(r *benchRegistry) (podImages, error) {
		var p podImages
		d, err := r.pushImage(ctx, "bench/migrate", "2.3.0", "linux", "amd64")
		if err != nil {
			return p, err
		}
		p.Init = r.Host + "/bench/migrate@" + d.String()
		if _, err := r.pushImage(ctx, "bench/shop-web", "1.4.2", "linux", "amd64"); err != nil {
			return p, err
		}
		p.App = r.Host + "/bench/shop-web:1.4.2"
		if d, err = r.pushImage(ctx, "bench/log-shipper", "3.2.1", "linux", "amd64"); err != nil {
			return p, err
		}
		p.Sidecar = r.Host + "/bench/log-shipper:3.2.1@" + d.String()
		if _, err := r.pushIndex(ctx, "bench/envoy", "1.31", "linux/amd64", "linux/arm64"); err != nil {
			return p, err
		}
		p.Proxy = r.Host + "/bench/envoy:1.31"
		return p, nil
	}
	newImages := func(r *benchRegistry, n int) ([]string, error) {
		var out []string
		for i := range n {
			repo, tag := fmt.Sprintf("new/app-%03d", i), "v1.0.0"
			var err error
			var ref string
			if i%5 == 0 {
				_, err = r.pushIndex(ctx, repo, tag, "linux/amd64", "linux/arm64")
				ref = r.Host + "/" + repo + ":" + tag
			} else {
				d, perr := r.pushImage(ctx, repo, tag, "linux", "amd64")
				err = perr
				ref = r.Host + "/" + repo + ":" + tag
				if i%2 == 1 {
					ref = r.Host + "/" + repo + "@" + d.String()
				}
			}
			if err != nil {
				return nil, err
			}
			out = append(out, ref)
		}
		return out, nil
	}
	var err error
	if b.shared, err = sharedOn(b.fast); err != nil {
		return err
	}
	if b.sharedSlow, err = sharedOn(b.slow); err != nil {
		return err
	}
	if b.coldApps, err = newImages(b.fast, b.s.ColdImages); err != nil {
		return err
	}
	if b.slowApps, err = newImages(b.slow, b.s.ColdImages); err != nil {
		return err
	}
	for _, r := range []*benchRegistry{b.fast, b.slow} {
		if _, err := r.pushImage(ctx, burstRepo, "5.0.0", "linux", "amd64"); err != nil {
			return err
		}
		if _, err := r.pushIndex(ctx, burstIndexRepo, "2.0.0", "linux/amd64", "linux/arm64"); err != nil {
			return err
		}
	}
	b.burstApp = b.fast.Host + "/" + burstRepo + ":5.0.0"
	b.slowBurstApp = b.slow.Host + "/" + burstRepo + ":5.0.0"
	b.burstIndexApp = b.fast.Host + "/" + burstIndexRepo + ":2.0.0"
	b.slowBurstIndexApp = b.slow.Host + "/" + burstIndexRepo + ":2.0.0"
	for i := range hangImgs {
		b.hangApps = append(b.hangApps, fmt.Sprintf("%s/hang/app-%d:1.0", b.hang.Host, i))
	}
	b.fast.take()
	b.slow.take()
	return nil
}

// Close stops every process and registry.
func (b *bench) Close() {
	b.baselineProc.Stop()
	if b.cluster != nil {
		b.cluster.Stop()
	}
	for _, r := range []*benchRegistry{b.fast, b.slow, b.hang} {
		if r != nil {
			r.Close()
		}
	}
}

// withApp is the shared pod shape with the app container's image replaced.
func withApp(p podImages, app string) podImages {
	p.App = app
	return p
}

func shapes(base podImages, apps []string) []podImages {
	out := make([]podImages, len(apps))
	for i, a := range apps {
		out[i] = withApp(base, a)
	}
	return out
}

// measured is one webhook process driven through one phase, with what it cost.
type measured struct {
	phase
	allocBytes   float64 // allocated by the webhook process during the phase
	cpuSeconds   float64 // CPU time of the webhook process during the phase
	selfCPU      float64 // CPU time of this process (load generator and registries)
	registryReqs requestCounts
}

// measure drives proc through one phase and reads its allocations and the registries'
// request counters around it.
func (b *bench) measure(ctx context.Context, proc *webhookProc, bodies *bodySource, want expect, stop func(int64) bool) (measured, error) {
	return b.measureAt(ctx, b.s.Concurrency, proc, bodies, want, stop)
}

func (b *bench) measureAt(ctx context.Context, concurrency int, proc *webhookProc, bodies *bodySource, want expect, stop func(int64) bool) (measured, error) {
	b.takeRegistryCounts()
	allocBefore, cpuBefore, err := proc.usage()
	if err != nil {
		return measured{}, err
	}
	selfBefore := selfCPUSeconds()
	ph := drive(ctx, b.client, proc.URL, concurrency, bodies, want, stop)
	selfAfter := selfCPUSeconds()
	allocAfter, cpuAfter, err := proc.usage()
	if err != nil {
		return measured{}, err
	}
	if ctx.Err() != nil {
		return measured{}, ctx.Err()
	}
	return measured{
		phase:        ph,
		allocBytes:   allocAfter - allocBefore - proc.scrapeCost,
		cpuSeconds:   cpuAfter - cpuBefore,
		selfCPU:      selfAfter - selfBefore,
		registryReqs: b.takeRegistryCounts(),
	}, nil
}

func (b *bench) takeRegistryCounts() requestCounts {
	out := requestCounts{}
	for _, r := range []*benchRegistry{b.fast, b.slow, b.hang} {
		for k, v := range r.take() {
			out[k] += v
		}
	}
	return out
}

func count(n int) func(int64) bool { return func(started int64) bool { return started >= int64(n) } }

func until(t time.Time) func(int64) bool { return func(int64) bool { return time.Now().After(t) } }

// startPullgate starts a fresh pullgate (empty cache) and calibrates its metrics scrape.
func (b *bench) startPullgate(ctx context.Context) (*webhookProc, error) {
	p, err := startWebhook(ctx, "pullgate", b.pullgate)
	if err != nil {
		return nil, err
	}
	if err := p.calibrate(); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// warmUp fills a pullgate's cache with the shared images (and opens the connection).
func (b *bench) warmUp(ctx context.Context, p *webhookProc, shared podImages) error {
	bodies, err := newBodySource(shared)
	if err != nil {
		return err
	}
	ph := drive(ctx, b.client, p.URL, b.s.Concurrency, bodies, expect{allowed: true}, count(4*b.s.Concurrency))
	if ph.Errors > 0 || ph.Unexpected > 0 {
		return fmt.Errorf("warming up %s: %d errors, %d unexpected answers; first: %s", p.name, ph.Errors, ph.Unexpected, ph.FirstOdd)
	}
	return nil
}

func (b *bench) runAll(ctx context.Context) (*report, error) {
	rep := newReport(b)
	if err := b.baselineProc.calibrate(); err != nil {
		return nil, err
	}
	want := func(name string) bool {
		if b.s.Only == "" {
			return true
		}
		return slices.Contains(strings.Split(b.s.Only, ","), name)
	}

	// Baseline and warm, interleaved.
	pg, err := b.startPullgate(ctx)
	if err != nil {
		return nil, err
	}
	warmBodies, err := newBodySource(b.shared)
	if err != nil {
		return nil, err
	}
	for _, p := range []*webhookProc{b.baselineProc, pg} {
		if err := b.warmUp(ctx, p, b.shared); err != nil {
			pg.Stop()
			return nil, err
		}
		// And a couple of seconds of load, so both run hot (JIT-free Go, but TLS, pools, GC pacing).
		drive(ctx, b.client, p.URL, b.s.Concurrency, warmBodies, expect{allowed: true}, until(time.Now().Add(2*time.Second)))
	}
	// Each round measures both webhooks at the benchmark's concurrency (throughput), then
	// one request at a time (latency without queueing on a shared machine).
	var base, warm, baseSerial, warmSerial []measured
	for r := range b.s.Rounds {
		fmt.Printf("round %d/%d: baseline, then pullgate warm, %s each at concurrency %d, then %s each one at a time\n",
			r+1, b.s.Rounds, b.s.Duration, b.s.Concurrency, b.s.Duration)
		for _, step := range []struct {
			proc        *webhookProc
			concurrency int
			into        *[]measured
		}{
			{b.baselineProc, b.s.Concurrency, &base},
			{pg, b.s.Concurrency, &warm},
			{b.baselineProc, 1, &baseSerial},
			{pg, 1, &warmSerial},
		} {
			var profiled chan error
			if b.s.CPUProfile != "" && r == 0 && step.concurrency > 1 {
				profiled = make(chan error, 1)
				file := filepath.Join(b.s.CPUProfile, step.proc.name+"-warm.pprof")
				go func() { profiled <- step.proc.cpuProfile(ctx, b.s.Duration-time.Second, file) }()
			}
			m, err := b.measureAt(ctx, step.concurrency, step.proc, warmBodies, expect{allowed: true}, until(time.Now().Add(b.s.Duration)))
			if profiled != nil {
				if perr := <-profiled; perr != nil {
					fmt.Println("cpu profile:", perr)
				}
				// Allocations since the process started, nearly all of them warm admissions.
				file := filepath.Join(b.s.CPUProfile, step.proc.name+"-allocs.pprof")
				if perr := step.proc.profile(ctx, "allocs", file); perr != nil {
					fmt.Println("allocs profile:", perr)
				}
			}
			if err != nil {
				pg.Stop()
				return nil, err
			}
			*step.into = append(*step.into, m)
		}
	}
	pg.Stop()
	rep.add("baseline", "do-nothing webhook (same controller-runtime stack, TLS, decode, allow); warm pod shape", merge(base), nil)
	rep.add("warm", "pullgate, every image cached; 4 images per pod (2 tags, 1 digest, 1 tag@digest; 1 multi-arch), pull secret", merge(warm), nil)
	rep.add("baseline-serial", "baseline, one request at a time", merge(baseSerial), nil)
	rep.add("warm-serial", "warm, one request at a time", merge(warmSerial), nil)

	if want("cold") {
		fmt.Printf("cold: %d admissions, each with a new image, fresh pullgate\n", b.s.ColdImages)
		m, err := b.fresh(ctx, nil, shapes(b.shared, b.coldApps), expect{allowed: true}, count(b.s.ColdImages))
		if err != nil {
			return nil, err
		}
		rep.add("cold", fmt.Sprintf("fresh pullgate (empty cache), %d admissions, each pod's app image new (%d distinct new images + 3 shared, all uncached at start)",
			b.s.ColdImages, b.s.ColdImages), m, nil)
	}
	// A burst is a rollout: a new image in a registry the cluster already pulls from, so
	// pullgate has talked to that registry before (the pod's other images are cached).
	bursts := []struct {
		only, name, what, image, repo string // only: the -only name that runs it
		shared                        podImages
		rtt                           time.Duration
		roundTrips                    int
	}{
		{"burst", "burst", "one new single-arch image, loopback registry", b.burstApp, burstRepo, b.shared, b.rttFast, 2},
		{"burst", "burst-index", "one new multi-arch image, loopback registry", b.burstIndexApp, burstIndexRepo, b.shared, b.rttFast, 1},
		{"burst-latency", "latency-burst", fmt.Sprintf("one new single-arch image, registry at +%s per round trip", b.s.Latency), b.slowBurstApp, burstRepo, b.sharedSlow, b.rttSlow, 2},
		{"burst-latency", "latency-burst-index", fmt.Sprintf("one new multi-arch image, registry at +%s per round trip", b.s.Latency), b.slowBurstIndexApp, burstIndexRepo, b.sharedSlow, b.rttSlow, 1},
	}
	for _, burst := range bursts {
		if !want(burst.only) {
			continue
		}
		fmt.Printf("%s: %d admissions of %s\n", burst.name, b.s.Burst, burst.what)
		m, err := b.fresh(ctx, &burst.shared, []podImages{withApp(burst.shared, burst.image)}, expect{allowed: true}, count(b.s.Burst))
		if err != nil {
			return nil, err
		}
		rep.add(burst.name, fmt.Sprintf("%d admissions of %s; the pod's other images (same registry) cached", b.s.Burst, burst.what), m,
			&burstInfo{repo: burst.repo, rtt: burst.rtt, roundTrips: burst.roundTrips})
	}
	if want("latency") {
		fmt.Printf("latency: %d admissions, each with a new image, registry at +%s\n", b.s.ColdImages, b.s.Latency)
		m, err := b.fresh(ctx, nil, shapes(b.sharedSlow, b.slowApps), expect{allowed: true}, count(b.s.ColdImages))
		if err != nil {
			return nil, err
		}
		rep.add("latency-cold", fmt.Sprintf("as cold, but every image on a registry with +%s per round trip", b.s.Latency), m, nil)
	}
	if want("hang") {
		if err := b.runHang(ctx, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// fresh starts a new pullgate, warms it with warm's images when warm is set, and measures
// one phase of bodies.
func (b *bench) fresh(ctx context.Context, warm *podImages, shapes []podImages, want expect, stop func(int64) bool) (measured, error) {
	p, err := b.startPullgate(ctx)
	if err != nil {
		return measured{}, err
	}
	defer p.Stop()
	if warm != nil {
		if err := b.warmUp(ctx, p, *warm); err != nil {
			return measured{}, err
		}
	}
	bodies, err := newBodySource(shapes...)
	if err != nil {
		return measured{}, err
	}
	return b.measure(ctx, p, bodies, want, stop)
}

// runHang measures a registry that accepts connections and never answers: admissions naming
// it until its circuit opens (bounded by lookupTimeout), then for HangAfter with it open.
func (b *bench) runHang(ctx context.Context, rep *report) error {
	p, err := b.startPullgate(ctx)
	if err != nil {
		return err
	}
	defer p.Stop()
	if err := b.warmUp(ctx, p, b.shared); err != nil {
		return err
	}
	bodies, err := newBodySource(shapes(b.shared, b.hangApps)...)
	if err != nil {
		return err
	}
	fmt.Printf("hang: admissions naming %d images on a registry that never answers, until its circuit opens (at most %s)\n", hangImgs, b.s.HangMax)
	var open atomic.Bool
	var openedAfter time.Duration
	start := time.Now()
	pollCtx, stopPoll := context.WithCancel(ctx)
	go func() {
		metric := fmt.Sprintf(`pullgate_registry_circuit_open{host=%q}`, b.hang.Host)
		for pollCtx.Err() == nil {
			if m, err := p.scrape(); err == nil && m[metric] == 1 {
				openedAfter = time.Since(start)
				open.Store(true)
				return
			}
			select {
			case <-pollCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	deadline := start.Add(b.s.HangMax)
	before, err := b.measure(ctx, p, bodies, expect{allowed: true, warnings: true},
		func(int64) bool { return open.Load() || time.Now().After(deadline) })
	stopPoll()
	if err != nil {
		return err
	}
	info := &hangInfo{lookupTimeout: b.s.LookupTimeout}
	if open.Load() {
		info.openedAfter = openedAfter
	}
	rep.add("hang-before-open", fmt.Sprintf("registry never answers, lookupTimeout %s; admissions until its circuit opens", b.s.LookupTimeout), before, info)
	if !open.Load() {
		fmt.Printf("hang: the circuit did not open within %s\n", b.s.HangMax)
		return nil
	}
	fmt.Printf("hang: circuit open after %s; measuring %s with it open, interleaved with as long of the warm pod shape\n",
		openedAfter.Round(100*time.Millisecond), b.s.HangAfter)
	// The same process, the same minutes: the comparison with warm is not at the mercy of
	// other load on the machine.
	warmBodies, err := newBodySource(b.shared)
	if err != nil {
		return err
	}
	var hung, warm []measured
	for range 2 {
		m, err := b.measure(ctx, p, warmBodies, expect{allowed: true}, until(time.Now().Add(b.s.HangAfter/2)))
		if err != nil {
			return err
		}
		warm = append(warm, m)
		if m, err = b.measure(ctx, p, bodies, expect{allowed: true, warnings: true}, until(time.Now().Add(b.s.HangAfter/2))); err != nil {
			return err
		}
		hung = append(hung, m)
	}
	metric := fmt.Sprintf(`pullgate_registry_circuit_open{host=%q}`, b.hang.Host)
	stillOpen := false
	if m, err := p.scrape(); err == nil {
		stillOpen = m[metric] == 1
	}
	rep.add("hang-circuit-open", "the same admissions once the circuit is open", merge(hung),
		&hangInfo{lookupTimeout: b.s.LookupTimeout, afterOpen: true, stillOpen: stillOpen})
	rep.add("hang-warm-reference", "the warm pod shape on the same pullgate, interleaved with hang-circuit-open", merge(warm), nil)
	return nil
}

// merge pools several rounds into one measurement: latencies together, elapsed summed.
func merge(ms []measured) measured {
	var out measured
	out.registryReqs = requestCounts{}
	for _, m := range ms {
		out.Latencies = append(out.Latencies, m.Latencies...)
		out.Elapsed += m.Elapsed
		out.Errors += m.Errors
		out.Unexpected += m.Unexpected
		if out.FirstOdd == "" {
			out.FirstOdd = m.FirstOdd
		}
		if m.Proto != "" {
			out.Proto = m.Proto
		}
		out.allocBytes += m.allocBytes
		out.cpuSeconds += m.cpuSeconds
		out.selfCPU += m.selfCPU
		for k, v := range m.registryReqs {
			out.registryReqs[k] += v
		}
	}
	return out
}

// selfCPUSeconds is the user and system CPU time of this process so far.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// gitCommit names the commit of root, with "+dirty" when cmd/ or pkg/ have uncommitted
// changes; "unknown" outside a git checkout.
func gitCommit(ctx context.Context, root string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--", "cmd", "pkg", "go.mod", "go.sum").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		commit += "+dirty"
	}
	return commit
}
