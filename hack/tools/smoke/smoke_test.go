// Package smoke proves that the binaries in hack/tools/bin form a working
// control plane: controller-runtime's envtest starts etcd + kube-apiserver
// from them, then kubectl and helm talk to it.
//
// It is its own module (not part of pullgate's, nor of hack/tools's, whose
// dependency graph must stay exactly k8s.io/kubernetes's). Run it with:
//
//	make tools && (cd hack/tools/smoke && go test -count=1 -v .)
//
// KUBEBUILDER_ASSETS overrides the binary directory (default ../bin).
package smoke

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const wantVersion = "v1.37.2"

func TestControlPlane(t *testing.T) {
	bin := os.Getenv("KUBEBUILDER_ASSETS")
	if bin == "" {
		bin = "../bin"
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl", "helm"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%v (run `make tools` first)", err)
		}
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory:    bin,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("envtest start: %v", err)
	}
	t.Logf("control plane up in %s at %s", time.Since(start).Round(time.Millisecond), cfg.Host)
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("envtest stop: %v", err)
		}
	})

	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if sv.GitVersion != wantVersion {
		t.Fatalf("server version %q, want %q", sv.GitVersion, wantVersion)
	}

	user, err := env.AddUser(envtest.User{Name: "smoke", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		t.Logf("$ %s %s\n%s", name, strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		return string(out)
	}

	out := run("kubectl", "--kubeconfig", kubeconfig, "version")
	for _, want := range []string{"Client Version: " + wantVersion, "Server Version: " + wantVersion} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl version: missing %q", want)
		}
	}
	if strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("kubectl version printed a warning (version skew?)")
	}
	run("kubectl", "--kubeconfig", kubeconfig, "create", "ns", "x")
	if out := run("kubectl", "--kubeconfig", kubeconfig, "get", "ns", "x", "-o", "jsonpath={.status.phase}"); out != "Active" {
		t.Errorf("namespace x phase %q, want Active", out)
	}
	run("helm", "--kubeconfig", kubeconfig, "list", "--all-namespaces")
}
