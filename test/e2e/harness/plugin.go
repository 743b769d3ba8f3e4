package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var pluginBuild struct {
	once sync.Once
	dir  string
	err  error
}

// BuildPlugin builds kubectl-pullgate as `make build-plugin` does, once per run, into a
// directory of its own, and returns that directory (to put on PATH for kubectl's plugin
// discovery).
func (e *Env) BuildPlugin(ctx context.Context) (string, error) {
	pluginBuild.once.Do(func() {
		dir := filepath.Join(e.Dir, "plugin-bin")
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e", "-o", filepath.Join(dir, "kubectl-pullgate"), "./cmd/kubectl-pullgate")
		build.Dir = e.root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			pluginBuild.err = fmt.Errorf("building kubectl-pullgate: %w\n%s", err, out)
			return
		}
		pluginBuild.dir = dir
	})
	return pluginBuild.dir, pluginBuild.err
}

// Plugin runs `kubectl pullgate ARGS` with the real kubectl, which finds the plugin on PATH
// as it would for a user, against the environment's kubeconfig. The plugin's docker config
// is an empty directory: only what the cluster holds gives credentials.
func (e *Env) Plugin(ctx context.Context, stdin string, args ...string) Result {
	dir, err := e.BuildPlugin(ctx)
	if err != nil {
		return Result{ExitCode: -1, Stderr: err.Error()}
	}
	dockerConfig := filepath.Join(e.Dir, "plugin-docker-config")
	if err := os.MkdirAll(dockerConfig, 0o700); err != nil {
		return Result{ExitCode: -1, Stderr: err.Error()}
	}
	cmd := exec.CommandContext(ctx, e.kubectl, append([]string{"pullgate", "--kubeconfig", e.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "DOCKER_CONFIG="+dockerConfig)
	return runCommand(cmd, stdin)
}

// ExpandFiles writes the manifests files with ${...} expanded and ${NS} set to ns into a new
// directory under Dir, named after ns, and returns it: what a user would check or apply.
func (e *Env) ExpandFiles(ns string, files ...string) (string, error) {
	dir := filepath.Join(e.Dir, "expanded", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(e.ExpandIn(ns, string(raw))), 0o600); err != nil {
			return "", err
		}
	}
	return dir, nil
}
