package harness

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/pullgate/pullgate/internal/testcerts"
)

// What pods need from the host that kube-proxy and a cluster network would give them, and
// nothing more, so that pullgate itself can run in the cluster (test/install):
//
//   - the API server at the "kubernetes" Service's address, which the kubelet hands every pod
//     (KUBERNETES_SERVICE_HOST): the address is put on an interface of the run's (a bridge
//     without ports: this kernel has no dummy links) and a TCP forwarder there passes
//     connections to the API server on 127.0.0.1. The API server's serving certificate names
//     that address, as a real one names its Service IP.
//   - a registry both the nodes' containerd and the pods can reach (a pod's 127.0.0.1 is its
//     own): the in-cluster registry, on a second address of that interface. It speaks plain
//     HTTP, so each node's containerd has a hosts.toml saying so, as nodes do for an internal
//     registry without TLS.
//
// Pods reach both through their bridge's gateway (the host): the CNI config routes 0.0.0.0/0
// there. The host delivers packets for its own addresses whatever interface they come in on,
// so no IP forwarding is turned on.

// clusterAddrs are the run's Service network and in-cluster registry address.
type clusterAddrs struct {
	serviceCIDR string // 10.96.B.0/24
	serviceIP   string // 10.96.B.1: the "kubernetes" Service
	registryIP  string // 10.97.B.1
	link        string // the interface holding both
}

func newClusterAddrs(runID string) clusterAddrs {
	b := 0
	if raw, err := hex.DecodeString(runID); err == nil {
		b = int(raw[1])
	}
	return clusterAddrs{
		serviceCIDR: fmt.Sprintf("10.96.%d.0/24", b),
		serviceIP:   fmt.Sprintf("10.96.%d.1", b),
		registryIP:  fmt.Sprintf("10.97.%d.1", b),
		link:        "pge2e" + runID + "h",
	}
}

// makeLink creates the interface with the Service and registry addresses.
func (a clusterAddrs) makeLink(dir string) error {
	if err := record(dir, recordLinks, a.link); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", a.link, "type", "bridge"},
		{"addr", "add", a.serviceIP + "/32", "dev", a.link},
		{"addr", "add", a.registryIP + "/32", "dev", a.link},
		{"link", "set", a.link, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// writeAPIServerCert gives envtest's kube-apiserver a serving certificate that also names the
// Service address and DNS names, as a real API server's does; envtest then uses it (it makes
// its own only when CertDir has none, and then its service account signer too, which is
// therefore written here) and trusts ca.
func (a clusterAddrs) writeAPIServerCert(env *envtest.Environment) error {
	ca, err := testcerts.NewCA("pullgate-e2e-apiserver")
	if err != nil {
		return err
	}
	api := env.ControlPlane.GetAPIServer()
	if err := ca.WriteServingFor(api.CertDir, "apiserver.crt", "apiserver.key",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(a.serviceIP)}); err != nil {
		return fmt.Errorf("writing the API server's serving certificate: %w", err)
	}
	api.SecureServing.CA = ca.PEM()
	signer, err := testcerts.NewCA("pullgate-e2e-service-account-signer")
	if err != nil {
		return err
	}
	// envtest's names (controlplane/apiserver.go saCertFile, saKeyFile), which its flags use.
	return signer.WriteKeyPair(api.CertDir, "sa-signer.crt", "sa-signer.key")
}

// forwarder passes TCP connections from a listener to a target address.
type forwarder struct {
	ln   net.Listener
	wg   sync.WaitGroup
	done chan struct{}
}

func forward(listen, target string) (*forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", listen, err)
	}
	f := &forwarder{ln: ln, done: make(chan struct{})}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() {
				defer c.Close()
				t, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer t.Close()
				go func() {
					<-f.done
					c.Close()
					t.Close()
				}()
				go func() { _, _ = io.Copy(t, c); t.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, t)
			})
		}
	})
	return f, nil
}

func (f *forwarder) close() {
	if f == nil {
		return
	}
	close(f.done)
	f.ln.Close()
	f.wg.Wait()
}

// inClusterRegistry is a registry on the in-cluster address, for images both the nodes and
// pods in the cluster pull or look up.
type inClusterRegistry struct {
	host string // 10.97.B.1:5000
	srv  *http.Server
}

func startInClusterRegistry(ip string) (*inClusterRegistry, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "5000"))
	if err != nil {
		return nil, fmt.Errorf("listening for the in-cluster registry: %w", err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &inClusterRegistry{host: ln.Addr().String(), srv: srv}, nil
}

func (r *inClusterRegistry) close() {
	if r != nil {
		_ = r.srv.Close()
	}
}

// writeHostsTOML tells a node's containerd that host speaks plain HTTP, in containerd's
// registry configuration directory (config_path), which it reads at every pull.
func writeHostsTOML(node *realNode, host string) error {
	dir := filepath.Join(node.dir, "certs.d", host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+host, "http://"+host)
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644)
}

// InClusterRegistry is the registry pods in the cluster and the nodes both reach
// (10.97.B.1:5000, plain HTTP); "" before Start.
func (e *Env) InClusterRegistry() string {
	if e.inCluster == nil {
		return ""
	}
	return e.inCluster.host
}

// ServiceIP is the "kubernetes" Service's address, where pods reach the API server.
func (e *Env) ServiceIP() string { return e.addrs.serviceIP }

var errNoAPIServer = errors.New("no API server address")

// startAPIForwarder forwards the Service address's port 443 to the API server.
func (e *Env) startAPIForwarder(ctx context.Context) error {
	u := e.env.ControlPlane.GetAPIServer().SecureServing.URL("https", "/")
	if u == nil || u.Host == "" {
		return errNoAPIServer
	}
	f, err := forward(net.JoinHostPort(e.addrs.serviceIP, "443"), u.Host)
	if err != nil {
		return err
	}
	e.apiForwarder = f
	return nil
}
