// Command image builds pullgate's container image without a Docker engine and pushes it to a
// registry: the same static binary the Dockerfile builds (make build: the Dockerfile's go
// build flags and VERSION), on a minimal base made here from the few files distroless'
// static:nonroot provides that pullgate needs — /etc/passwd and /etc/group with the nonroot
// user 65532, the host's CA certificates for registries' TLS, and /tmp — with go-
// containerregistry's mutate. Timestamps are zero, so the same inputs give the same digest.
//
// The Dockerfile stays the release path (distroless, multi-platform); this is how the install
// tests get an image on a machine without Docker:
//
//	make image IMAGE=10.97.1.1:5000/pullgate:v0.1.0 [INSECURE=1]
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	binary := flag.String("binary", "bin/webhook", "the pullgate webhook binary (make build)")
	version := flag.String("version", "dev", "the version it was built with, for the image's label")
	ref := flag.String("ref", "", "where to push the image: REGISTRY/REPOSITORY:TAG")
	insecure := flag.Bool("insecure", false, "push over plain HTTP")
	caFile := flag.String("ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle the image trusts")
	flag.Parse()
	if *ref == "" {
		fmt.Fprintln(os.Stderr, "image: -ref is required")
		os.Exit(2)
	}
	digest, err := build(*binary, *version, *ref, *caFile, *insecure)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s@%s\n", *ref, digest)
}

func build(binary, version, refStr, caFile string, insecure bool) (v1.Hash, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(refStr, opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading the CA certificates: %w", err)
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading the binary (make build): %w", err)
	}
	base, err := layer([]file{
		{name: "etc/", dir: true},
		{name: "etc/passwd", body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", body: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/ssl/", dir: true},
		{name: "etc/ssl/certs/", dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", body: ca},
		{name: "home/", dir: true},
		{name: "home/nonroot/", dir: true, uid: 65532, gid: 65532},
		{name: "tmp/", dir: true, mode: 0o1777},
	})
	if err != nil {
		return v1.Hash{}, err
	}
	app, err := layer([]file{{name: "webhook", body: bin, mode: 0o755}})
	if err != nil {
		return v1.Hash{}, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, base, app); err != nil {
		return v1.Hash{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	// As the Dockerfile's USER, ENTRYPOINT, EXPOSE and LABEL.
	cf.Config.User = "65532:65532"
	cf.Config.Entrypoint = []string{"/webhook"}
	cf.Config.ExposedPorts = map[string]struct{}{"9443/tcp": {}, "8080/tcp": {}, "8081/tcp": {}}
	cf.Config.Env = []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "pullgate",
		"org.opencontainers.image.description": "Admission webhook that stops pods whose images cannot be pulled",
		"org.opencontainers.image.source":      "https://github.com/pullgate/pullgate",
		"org.opencontainers.image.version":     version,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(ref, img); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return img.Digest()
}

type file struct {
	name     string
	body     []byte
	dir      bool
	mode     int64
	uid, gid int
}

// layer makes a gzipped tar layer of files, owned by root unless said, with zero times.
func layer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Uid: f.uid, Gid: f.gid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		default:
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, int64(len(f.body))
		}
		if f.mode != 0 {
			h.Mode = f.mode
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}
