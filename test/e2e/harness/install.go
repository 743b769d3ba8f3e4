package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// What the install tests need beyond the cluster: pullgate's image in the in-cluster registry,
// cert-manager running, and helm.

// BuildImage builds the pullgate binary as `make build` does (the Dockerfile's flags) with
// version stamped in, makes its image as `make image` does (hack/image, no Docker), pushes it
// to the in-cluster registry as pullgate:version, and returns the reference.
func (e *Env) BuildImage(ctx context.Context, version string) (string, error) {
	bin := filepath.Join(e.Dir, "bin", "webhook-"+version)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/webhook")
	build.Dir = e.root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building pullgate %s: %w\n%s", version, err, out)
	}
	ref := e.InClusterRegistry() + "/pullgate:" + version
	img := exec.CommandContext(ctx, "go", "run", "./hack/image", "-binary", bin, "-version", version, "-ref", ref, "-insecure")
	img.Dir = e.root
	if out, err := img.CombinedOutput(); err != nil {
		return "", fmt.Errorf("making pullgate's image: %w\n%s", err, out)
	}
	return ref, nil
}

// PushInCluster pushes a testapp image (one platform, or an index of several) to the
// in-cluster registry as repoTag and returns its reference.
func (e *Env) PushInCluster(ctx context.Context, repoTag string, platforms ...string) (string, error) {
	ref := e.InClusterRegistry() + "/" + repoTag
	_, err := e.pushImage(ctx, ref, authn.Anonymous, platforms...)
	return ref, err
}

// Helm runs the helm binary of hack/tools/bin against the cluster.
func (e *Env) Helm(ctx context.Context, args ...string) Result {
	return e.run(ctx, filepath.Join(e.assets, "helm"), append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
}

func (e *Env) run(ctx context.Context, bin string, args ...string) Result {
	return runCommand(exec.CommandContext(ctx, bin, args...), "")
}

// StartCertManager installs cert-manager's CRDs and runs its controller and cainjector (built
// by `make tools` from hack/certmanager) as processes against the API server, as they run in
// a cluster but without leader election. Once per environment: a later call does nothing.
func (e *Env) StartCertManager(ctx context.Context) error {
	if e.certManagerRunning {
		return nil
	}
	dir, err := certManagerModuleDir(ctx, e.root)
	if err != nil {
		return err
	}
	crds, err := filepath.Glob(filepath.Join(dir, "deploy", "crds", "crd-*.yaml"))
	if err != nil || len(crds) == 0 {
		return fmt.Errorf("no cert-manager CRDs under %s", dir)
	}
	var all strings.Builder
	for _, f := range crds {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		// The files are the chart's templates: only their labels are templated.
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "{{") {
				all.WriteString(line + "\n")
			}
		}
		all.WriteString("---\n")
	}
	if r := e.Kubectl(ctx, all.String(), "apply", "--server-side", "-f", "-"); r.ExitCode != 0 {
		return fmt.Errorf("installing cert-manager's CRDs: %s", r.Output())
	}
	if r := e.Kubectl(ctx, "", "wait", "--for=condition=Established", "crd/certificates.cert-manager.io",
		"crd/issuers.cert-manager.io", "crd/certificaterequests.cert-manager.io", "--timeout=60s"); r.ExitCode != 0 {
		return fmt.Errorf("cert-manager's CRDs not established: %s", r.Output())
	}
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cert-manager"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	bin := filepath.Join(e.assets, "cert-manager")
	if err := e.cluster.start("cert-manager-controller", exec.Command(filepath.Join(bin, "controller"),
		"--kubeconfig="+e.Kubeconfig, "--leader-elect=false", "--cluster-resource-namespace=cert-manager",
		"--metrics-listen-address=127.0.0.1:0", "--v=1")); err != nil {
		return err
	}
	if err := e.cluster.start("cert-manager-cainjector", exec.Command(filepath.Join(bin, "cainjector"),
		"--kubeconfig="+e.Kubeconfig, "--leader-elect=false", "--v=1")); err != nil {
		return err
	}
	e.certManagerRunning = true
	return nil
}

// certManagerModuleDir is where the module cache holds the cert-manager version
// hack/certmanager requires.
func certManagerModuleDir(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/cert-manager/cert-manager")
	cmd.Dir = filepath.Join(root, "hack", "certmanager")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding cert-manager's module: %w", err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("finding cert-manager's module: %v %s", err, out)
	}
	return m.Dir, nil
}
