package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// webhookProc is a running webhook binary: pullgate or the baseline.
type webhookProc struct {
	name                  string
	cmd                   *exec.Cmd
	exited                chan struct{}
	URL                   string // https://127.0.0.1:PORT/validate
	metricsURL, readyzURL string
	port, metrics, probe  int
	pprofURL              string // http://127.0.0.1:PORT/debug/pprof/, or "" when not served
	logFile               *os.File
	// scrapeCost is what one metrics scrape allocates in the process, subtracted from the
	// allocations measured around a phase.
	scrapeCost float64
}

// procConfig is what every webhook process gets.
type procConfig struct {
	binary, certDir, kubeconfig, logDir string
	// extra are binary-specific flags (pullgate's --policy-file).
	extra []string
	// pprof serves /debug/pprof/ on a free loopback port.
	pprof bool
}

func buildBinary(ctx context.Context, root, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// startWebhook starts cfg.binary on free loopback ports and waits until /readyz answers 200.
func startWebhook(ctx context.Context, name string, cfg procConfig) (*webhookProc, error) {
	return startWebhookWithin(ctx, name, cfg, 60*time.Second)
}

// startWebhookWithin is startWebhook waiting up to ready for /readyz.
func startWebhookWithin(ctx context.Context, name string, cfg procConfig, ready time.Duration) (*webhookProc, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	p := &webhookProc{name: name, port: ports[0], metrics: ports[1], probe: ports[2], exited: make(chan struct{})}
	p.URL = fmt.Sprintf("https://127.0.0.1:%d/validate", p.port)
	p.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", p.metrics)
	p.readyzURL = fmt.Sprintf("http://127.0.0.1:%d/readyz", p.probe)
	p.logFile, err = os.Create(filepath.Join(cfg.logDir, fmt.Sprintf("%s-%d.log", name, p.port)))
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig", cfg.kubeconfig,
		"--cert-dir", cfg.certDir,
		"--port", strconv.Itoa(p.port),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", p.metrics),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", p.probe),
	}, cfg.extra...)
	if cfg.pprof {
		p.pprofURL = fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", ports[3])
		args = append(args, "--pprof-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[3]))
	}
	p.cmd = exec.Command(cfg.binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logFile, p.logFile
	// An interrupted benchmark leaves no webhook behind.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()

	deadline := time.Now().Add(ready)
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited at start; see %s", name, p.logFile.Name())
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		default:
		}
		if resp, err := http.Get(p.readyzURL); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s not ready after %s; see %s", name, ready, p.logFile.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM, then SIGKILL after 10s.
func (p *webhookProc) Stop() {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.logFile.Close()
}

// cpuProfile records the process's CPU profile for d into file.
func (p *webhookProc) cpuProfile(ctx context.Context, d time.Duration, file string) error {
	return p.profile(ctx, fmt.Sprintf("profile?seconds=%d", max(1, int(d.Seconds()))), file)
}

// profile saves the pprof profile at path under /debug/pprof/ (profile?seconds=N, allocs)
// into file.
func (p *webhookProc) profile(ctx context.Context, path, file string) error {
	if p.pprofURL == "" {
		return fmt.Errorf("%s serves no pprof endpoint", p.name)
	}
	url := p.pprofURL + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scrape reads the process's Prometheus metrics as "name{labels}" → value.
func (p *webhookProc) scrape() (map[string]float64, error) {
	resp, err := http.Get(p.metricsURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", p.metricsURL, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// usage is the process's total allocated heap bytes and CPU seconds since it started.
func (p *webhookProc) usage() (allocBytes, cpuSeconds float64, err error) {
	m, err := p.scrape()
	if err != nil {
		return 0, 0, err
	}
	found := false
	for _, k := range []string{"go_memstats_alloc_bytes_total", "go_gc_heap_allocs_bytes_total"} {
		if v, ok := m[k]; ok {
			allocBytes, found = v, true
			break
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("%s exposes neither go_memstats_alloc_bytes_total nor go_gc_heap_allocs_bytes_total", p.name)
	}
	cpu, ok := m["process_cpu_seconds_total"]
	if !ok {
		return 0, 0, fmt.Errorf("%s does not expose process_cpu_seconds_total", p.name)
	}
	return allocBytes, cpu, nil
}

func (p *webhookProc) allocBytes() (float64, error) {
	a, _, err := p.usage()
	return a, err
}

// calibrate measures what reading the allocation counter itself allocates: the smallest
// difference between back-to-back reads.
func (p *webhookProc) calibrate() error {
	prev, err := p.allocBytes()
	if err != nil {
		return err
	}
	p.scrapeCost = -1
	for range 4 {
		v, err := p.allocBytes()
		if err != nil {
			return err
		}
		if d := v - prev; p.scrapeCost < 0 || d < p.scrapeCost {
			p.scrapeCost = d
		}
		prev = v
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
