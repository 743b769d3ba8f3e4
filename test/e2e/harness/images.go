package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// appImages builds the images the real node runs: one layer holding testapp (built static for
// the image's architecture) as /app. Every image of the run shares that layer per
// architecture; a label in the config makes each name's digest its own.
type appImages struct {
	dir string // where the binaries are built

	mu     sync.Mutex
	layers map[string]v1.Layer // by GOARCH[/GOARM]
}

// goArch maps an OCI platform to the Go toolchain's GOARCH and GOARM.
func goArch(p v1.Platform) (goarch, goarm string, ok bool) {
	switch p.Architecture {
	case "amd64", "arm64", "386", "ppc64le", "s390x", "riscv64":
		return p.Architecture, "", true
	case "arm":
		v := strings.TrimPrefix(p.Variant, "v")
		if v == "" || v == "8" {
			v = "7"
		}
		return "arm", v, true
	}
	return "", "", false
}

// layer returns the /app layer for a platform. Platforms Go cannot build for (and non-Linux
// ones) get a layer whose /app is a text file: such images are never run here, only looked up.
func (a *appImages) layer(ctx context.Context, p v1.Platform) (v1.Layer, error) {
	goarch, goarm, ok := goArch(p)
	key := goarch + "/" + goarm
	if !ok || p.OS != "linux" {
		key = "text:" + p.OS + "/" + p.Architecture + "/" + p.Variant
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if l, ok := a.layers[key]; ok {
		return l, nil
	}
	var content []byte
	if strings.HasPrefix(key, "text:") {
		content = []byte("not runnable here: " + key + "\n")
	} else {
		bin := filepath.Join(a.dir, "testapp-"+strings.ReplaceAll(key, "/", "-"))
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin,
			"./test/e2e/harness/testapp")
		build.Dir = RepoRoot()
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building testapp for %s: %w\n%s", key, err, out)
		}
		var err error
		if content, err = os.ReadFile(bin); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	tarBytes := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	if a.layers == nil {
		a.layers = make(map[string]v1.Layer)
	}
	a.layers[key] = l
	return l, nil
}

// image returns an OCI image for platform p that runs /app; label makes its digest unique.
func (a *appImages) image(ctx context.Context, p v1.Platform, label string) (v1.Image, error) {
	l, err := a.layer(ctx, p)
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
	cf.Config.Entrypoint = []string{"/app"}
	cf.Config.Labels = map[string]string{"io.pullgate.e2e.image": label}
	return mutate.ConfigFile(img, cf)
}

// index returns an OCI index with one image per platform.
func (a *appImages) index(ctx context.Context, label string, platforms []v1.Platform) (v1.ImageIndex, error) {
	var idx v1.ImageIndex = empty.Index
	for _, p := range platforms {
		img, err := a.image(ctx, p, label)
		if err != nil {
			return nil, err
		}
		plat := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	return idx, nil
}

// parsePlatform reads "os/arch[/variant]".
func parsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, err
	}
	return *p, nil
}
