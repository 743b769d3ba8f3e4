// Command bench measures what pullgate adds to every pod creation, against a webhook that
// does nothing, on the same machine in the same run. It starts kube-apiserver and etcd
// (envtest, binaries from `make tools`), registries on loopback (go-containerregistry's
// pkg/registry, counted, and slowed or hung on purpose), the real pullgate binary and a
// do-nothing baseline webhook (test/bench/baseline, the same controller-runtime stack) over
// TLS, drives both with concurrent AdmissionReviews of realistic pods, prints a table,
// writes it as JSON and Markdown, and checks the targets of issue 7 (printed as PASS/FAIL,
// never a failed exit: a benchmark on a shared machine is evidence, not a gate).
//
//	make bench
//	go run ./test/bench -out BENCHMARKS-results.json [-concurrency 32] [-duration 5s] [-rounds 3]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// settings are the benchmark's knobs, from flags.
type settings struct {
	Out           string        `json:"-"`
	Markdown      string        `json:"-"`
	Concurrency   int           `json:"concurrency"`
	Duration      time.Duration `json:"-"`
	Rounds        int           `json:"rounds"`
	ColdImages    int           `json:"coldImages"`
	Burst         int           `json:"burst"`
	LookupTimeout time.Duration `json:"-"`
	Latency       time.Duration `json:"-"`
	HangAfter     time.Duration `json:"-"`
	HangMax       time.Duration `json:"-"`
	MaxLoad       float64       `json:"-"`
	Only          string        `json:"-"`
	Keep          bool          `json:"-"`
	CPUProfile    string        `json:"-"`
	Scale         string        `json:"-"`
	Kyverno       bool          `json:"kyverno"`
	KyvernoBinary string        `json:"-"`
	KyvernoCRDs   string        `json:"-"`

	// Human-readable copies of the durations for the JSON report.
	DurationS      string `json:"durationPerRound"`
	LookupTimeoutS string `json:"lookupTimeout"`
	LatencyS       string `json:"registryLatency"`
}

func main() {
	var s settings
	flag.StringVar(&s.Out, "out", "BENCHMARKS-results.json", "JSON file the results are written to")
	flag.StringVar(&s.Markdown, "md", "", "Markdown file the results table is written to (default: -out with .md)")
	flag.IntVar(&s.Concurrency, "concurrency", 32, "concurrent AdmissionReview requests in flight")
	flag.DurationVar(&s.Duration, "duration", 5*time.Second, "length of each warm and baseline measurement round")
	flag.IntVar(&s.Rounds, "rounds", 3, "rounds of baseline then warm, interleaved so that load from other processes hits both")
	flag.IntVar(&s.ColdImages, "cold-images", 100, "distinct new images in the cold-cache and 50 ms latency scenarios (one admission each)")
	flag.IntVar(&s.Burst, "burst", 1000, "admissions of one new image in the burst scenarios")
	flag.DurationVar(&s.LookupTimeout, "lookup-timeout", 2*time.Second, "the policy's lookupTimeout")
	flag.DurationVar(&s.Latency, "latency", 50*time.Millisecond, "round-trip latency added by the slow registry")
	flag.DurationVar(&s.HangAfter, "hang-after", 5*time.Second, "how long to measure once the hanging registry's circuit is open")
	flag.DurationVar(&s.HangMax, "hang-max", 90*time.Second, "give up waiting for the hanging registry's circuit to open after this")
	flag.Float64Var(&s.MaxLoad, "max-load", 0, "wait (up to 10 minutes) until the 1-minute load average is below this before starting; 0 does not wait")
	flag.StringVar(&s.Only, "only", "", "comma-separated scenarios to run (baseline and warm always run): cold, burst, latency, burst-latency, hang")
	flag.BoolVar(&s.Keep, "keep", false, "keep the work directory (logs of every process)")
	flag.StringVar(&s.CPUProfile, "cpuprofile", "", "directory to write CPU profiles of the baseline and of pullgate to, taken during the first round at -concurrency, and their allocation profiles after it (go tool pprof -top DIR/pullgate-warm.pprof; -sample_index=alloc_space DIR/pullgate-allocs.pprof)")
	flag.StringVar(&s.Scale, "scale", "", "instead of the scenarios, load envtest in steps of this many Secrets (comma-separated, e.g. 1000,10000,50000; with a fifth as many ServiceAccounts and a tenth as many Nodes and Namespaces) and measure a fresh pullgate's start-up, RSS, heap and admission latency at each (see test/bench/scale.go)")
	flag.BoolVar(&s.Kyverno, "kyverno", false, "also run Kyverno's admission controller (make kyverno) through the same scenarios, with an imageRegistry policy (test/bench/kyverno.go)")
	flag.StringVar(&s.KyvernoBinary, "kyverno-binary", filepath.Join(repoRoot(), "hack", "tools", "bin", "kyverno", "kyverno"), "Kyverno admission controller binary")
	flag.StringVar(&s.KyvernoCRDs, "kyverno-crds", filepath.Join(repoRoot(), "hack", "tools", "bin", "kyverno", "crds"), "directory of Kyverno's CRDs (its module's config/crds)")
	flag.Parse()
	if s.Markdown == "" {
		s.Markdown = strings.TrimSuffix(s.Out, filepath.Ext(s.Out)) + ".md"
	}
	s.DurationS, s.LookupTimeoutS, s.LatencyS = s.Duration.String(), s.LookupTimeout.String(), s.Latency.String()

	// envtest logs through controller-runtime; its chatter is not the benchmark's.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, s); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// repoRoot finds the module root from this file's location.
func repoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		wd, _ := os.Getwd()
		return wd
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func run(ctx context.Context, s settings) error {
	if s.Concurrency < 1 || s.Rounds < 1 || s.ColdImages < 1 || s.Burst < 1 || s.Duration <= 0 || s.LookupTimeout <= 0 {
		return errors.New("-concurrency, -rounds, -cold-images, -burst, -duration and -lookup-timeout must be positive")
	}
	if err := waitForLoad(ctx, s.MaxLoad); err != nil {
		return err
	}
	start, loadAtStart := time.Now(), loadAverage()
	root := repoRoot()
	dir, err := os.MkdirTemp("", "pullgate-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if s.Keep {
			fmt.Println("work directory kept:", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	b, err := newBench(ctx, s, root, dir)
	if err != nil {
		return err
	}
	defer b.Close()
	b.loadAtStart = loadAtStart
	fmt.Printf("Up in %s: kube-apiserver + etcd, registries %s (loopback), %s (+%s), %s (hangs); baseline and pullgate built.\n",
		time.Since(start).Round(100*time.Millisecond), b.fast.Host, b.slow.Host, s.Latency, b.hang.Host)

	if s.Scale != "" {
		return b.runScale(ctx)
	}
	rep, err := b.runAll(ctx)
	if err != nil {
		return err
	}
	if s.Kyverno {
		if err := b.runKyverno(ctx, rep); err != nil {
			return err
		}
		rep.compareKyverno()
	}
	rep.Elapsed = time.Since(start).Round(time.Second).String()
	return rep.write(s)
}

// waitForLoad waits until the 1-minute load average is below maxLoad (0: no wait), for at
// most 10 minutes, then goes on anyway and says so.
func waitForLoad(ctx context.Context, maxLoad float64) error {
	if maxLoad <= 0 {
		return nil
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		l := loadAverage()
		if l[0] < maxLoad {
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Printf("load average still %.2f after 10 minutes; running anyway\n", l[0])
			return nil
		}
		fmt.Printf("load average %.2f ≥ %.2f; waiting\n", l[0], maxLoad)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(15 * time.Second):
		}
	}
}
