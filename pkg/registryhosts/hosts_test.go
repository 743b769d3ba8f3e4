package registryhosts

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const all = CapPull | CapResolve | CapPush | CapReferrers

func TestEndpoints(t *testing.T) {
	tests := map[string]struct {
		files map[string]string // dir → hosts.toml
		host  string
		caps  Capabilities
		want  []Endpoint
		err   bool
	}{
		"no directory: the registry itself": {
			host: "ghcr.io", caps: CapPull | CapResolve,
			want: []Endpoint{{Scheme: "https", Host: "ghcr.io", Path: "/v2", Capabilities: all, Origin: true}},
		},
		"docker.io's origin is registry-1.docker.io": {
			host: "docker.io", caps: CapPull,
			want: []Endpoint{{Scheme: "https", Host: "registry-1.docker.io", Path: "/v2", Capabilities: all, Origin: true}},
		},
		"mirrors in file order, then the origin": {
			files: map[string]string{"docker.io": `server = "https://registry-1.docker.io"
[host."https://mirror-b.example.com"]
  capabilities = ["pull", "resolve"]
[host."https://mirror-b.example.com".header]
  x = "y"
[host."http://mirror-a.example.com:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
`},
			host: "docker.io", caps: CapPull | CapResolve,
			want: []Endpoint{
				{Scheme: "https", Host: "mirror-b.example.com", Path: "/v2", Capabilities: CapPull | CapResolve},
				{Scheme: "http", Host: "mirror-a.example.com:5000", Path: "/v2", Capabilities: CapPull | CapResolve, SkipVerify: true},
				{Scheme: "https", Host: "registry-1.docker.io", Path: "/v2", Capabilities: all, Origin: true},
			},
		},
		"a pull-only mirror is not asked to resolve a tag": {
			files: map[string]string{"ghcr.io": `[host."https://cache.example.com"]
  capabilities = ["pull"]
`},
			host: "ghcr.io", caps: CapPull | CapResolve,
			want: []Endpoint{{Scheme: "https", Host: "ghcr.io", Path: "/v2", Capabilities: all, Origin: true}},
		},
		"a pull-only mirror is asked for a digest": {
			files: map[string]string{"ghcr.io": `[host."https://cache.example.com"]
  capabilities = ["pull"]
`},
			host: "ghcr.io", caps: CapPull,
			want: []Endpoint{
				{Scheme: "https", Host: "cache.example.com", Path: "/v2", Capabilities: CapPull},
				{Scheme: "https", Host: "ghcr.io", Path: "/v2", Capabilities: all, Origin: true},
			},
		},
		"server replaces the origin": {
			files: map[string]string{"registry.example.com": `server = "https://proxy.example.com/prefix"
`},
			host: "registry.example.com", caps: CapPull,
			want: []Endpoint{{Scheme: "https", Host: "proxy.example.com", Path: "/prefix/v2", Capabilities: all, Origin: true}},
		},
		"override_path keeps the path": {
			files: map[string]string{"registry.example.com": `[host."https://m.example.com/api"]
  override_path = true
`},
			host: "registry.example.com", caps: CapPull,
			want: []Endpoint{
				{Scheme: "https", Host: "m.example.com", Path: "/api", Capabilities: all},
				{Scheme: "https", Host: "registry.example.com", Path: "/v2", Capabilities: all, Origin: true},
			},
		},
		"host:port directory as host_port_": {
			files: map[string]string{"registry.local_5000_": `[host."https://m.example.com"]
`},
			host: "registry.local:5000", caps: CapPull,
			want: []Endpoint{
				{Scheme: "https", Host: "m.example.com", Path: "/v2", Capabilities: all},
				{Scheme: "https", Host: "registry.local:5000", Path: "/v2", Capabilities: all, Origin: true},
			},
		},
		"_default applies to hosts without a directory": {
			files: map[string]string{"_default": `[host."https://everything.example.com"]
`},
			host: "quay.io", caps: CapPull,
			want: []Endpoint{
				{Scheme: "https", Host: "everything.example.com", Path: "/v2", Capabilities: all},
				{Scheme: "https", Host: "quay.io", Path: "/v2", Capabilities: all, Origin: true},
			},
		},
		"unknown capability is an error": {
			files: map[string]string{"ghcr.io": `[host."https://m.example.com"]
  capabilities = ["fly"]
`},
			host: "ghcr.io", caps: CapPull, err: true,
		},
		"invalid TOML is an error": {
			files: map[string]string{"ghcr.io": `[host."https://m.example.com"`},
			host:  "ghcr.io", caps: CapPull, err: true,
		},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			root := t.TempDir()
			for dir, content := range tc.files {
				os.MkdirAll(filepath.Join(root, dir), 0o755)
				if err := os.WriteFile(filepath.Join(root, dir, "hosts.toml"), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Config{Dir: root}.Endpoints(tc.host, tc.caps)
			if (err != nil) != tc.err {
				t.Fatalf("Endpoints: %v, want error %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`server = "https://r.io"` + "\n[host.\"https://m.io\"]\ncapabilities = [\"pull\"]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		Parse(b) // must not panic
	})
}
