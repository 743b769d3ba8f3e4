package policy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func TestMutationsOffByDefault(t *testing.T) {
	if diff := cmp.Diff(MutationPolicy{}, Default().Mutations); diff != "" {
		t.Errorf("Default().Mutations is not the zero value (-want +got):\n%s", diff)
	}
	p, err := Parse([]byte("mutations: {mirrors: [{registry: docker.io, mirrors: [mirror.internal/hub]}], pinDigests: true}"))
	if err != nil {
		t.Fatal(err)
	}
	if p.MutationsEnabledFor("apps", nil) {
		t.Errorf("rules without enabled: true turned mutations on")
	}
}

func TestParseMutations(t *testing.T) {
	doc := `
mutations:
  enabled: true
  mirrors:
    - registry: docker.io
      mirrors: [mirror.internal:5000/dockerhub, "[fd00::1]:5000"]
    - registry: docker.io
      repositoryPrefix: bitnami/charts
      mirrors: [harbor.internal/bitnami]
    - registry: ghcr.io
      mirrors: [docker.io/someone/ghcr]
  pullSecrets:
    - registry: registry.example.com:5000
      secretName: regcred
    - registry: registry.example.com:5000
      secretName: regcred.backup
  pinDigests: true
`
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := MutationPolicy{
		Enabled: true,
		Mirrors: []MirrorRule{
			{Registry: "docker.io", Mirrors: []string{"mirror.internal:5000/dockerhub", "[fd00::1]:5000"}},
			{Registry: "docker.io", RepositoryPrefix: "bitnami/charts", Mirrors: []string{"harbor.internal/bitnami"}},
			{Registry: "ghcr.io", Mirrors: []string{"docker.io/someone/ghcr"}},
		},
		PullSecrets: []PullSecretRule{
			{Registry: "registry.example.com:5000", SecretName: "regcred"},
			{Registry: "registry.example.com:5000", SecretName: "regcred.backup"},
		},
		PinDigests: true,
	}
	if diff := cmp.Diff(want, p.Mutations); diff != "" {
		t.Errorf("mutations mismatch (-want +got):\n%s", diff)
	}
}

func TestParseInvalidMutations(t *testing.T) {
	tests := map[string]struct {
		doc        string
		wantFields []string
		wantText   string
	}{
		"registry wildcard": {
			doc:        "mutations: {mirrors: [{registry: '*.example.com', mirrors: [m.internal]}]}",
			wantFields: []string{"mutations.mirrors[0].registry"},
			wantText:   "not a wildcard",
		},
		"registry missing": {
			doc:        "mutations: {mirrors: [{mirrors: [m.internal]}]}",
			wantFields: []string{"mutations.mirrors[0].registry"},
			wantText:   "must not be empty",
		},
		"registry with a path": {
			doc:        "mutations: {mirrors: [{registry: docker.io/library, mirrors: [m.internal]}]}",
			wantFields: []string{"mutations.mirrors[0].registry"},
		},
		"prefix not a repository path": {
			doc:        "mutations: {mirrors: [{registry: docker.io, repositoryPrefix: Team/, mirrors: [m.internal]}]}",
			wantFields: []string{"mutations.mirrors[0].repositoryPrefix"},
		},
		"no mirrors": {
			doc:        "mutations: {mirrors: [{registry: docker.io}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors"},
			wantText:   "list at least one mirror",
		},
		"too many mirrors": {
			doc:        "mutations: {mirrors: [{registry: docker.io, mirrors: [a.internal, b.internal, c.internal, d.internal, e.internal, f.internal]}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors"},
			wantText:   "must have at most 5 items",
		},
		"mirror with a scheme": {
			doc:        "mutations: {mirrors: [{registry: docker.io, mirrors: ['https://m.internal/hub']}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors[0]"},
			wantText:   "without a scheme",
		},
		"mirror path in upper case": {
			doc:        "mutations: {mirrors: [{registry: docker.io, mirrors: [m.internal/DockerHub]}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors[0]"},
			wantText:   "lower-case",
		},
		"mirror path ending in a slash": {
			doc:        "mutations: {mirrors: [{registry: docker.io, mirrors: [m.internal/]}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors[0]"},
		},
		"mirror listed twice": {
			doc:        "mutations: {mirrors: [{registry: docker.io, mirrors: [m.internal/hub, m.internal/hub]}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors[1]"},
		},
		"mirror is the registry itself": {
			doc:        "mutations: {mirrors: [{registry: docker.io, mirrors: [index.docker.io]}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors[0]"},
			wantText:   "must differ from the registry",
		},
		"two rules for one registry and prefix": {
			doc:        "mutations: {mirrors: [{registry: docker.io, mirrors: [a.internal]}, {registry: INDEX.docker.io, mirrors: [b.internal]}]}",
			wantFields: []string{"mutations.mirrors[1]"},
		},
		"mirror on a denied registry": {
			doc:        "registries: {denied: [m.internal]}\nmutations: {mirrors: [{registry: docker.io, mirrors: [m.internal:5000/hub]}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors[0]"},
			wantText:   "not allowed by registries.allowed/denied",
		},
		"mirror on a registry not in the allowed list": {
			doc:        "registries: {allowed: [docker.io]}\nmutations: {mirrors: [{registry: docker.io, mirrors: [m.internal/hub]}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors[0]"},
		},
		"pull secret registry wildcard": {
			doc:        "mutations: {pullSecrets: [{registry: '*.example.com', secretName: regcred}]}",
			wantFields: []string{"mutations.pullSecrets[0].registry"},
		},
		"pull secret without a name": {
			doc:        "mutations: {pullSecrets: [{registry: registry.example.com}]}",
			wantFields: []string{"mutations.pullSecrets[0].secretName"},
			wantText:   "Required value",
		},
		"pull secret name not a name": {
			doc:        "mutations: {pullSecrets: [{registry: registry.example.com, secretName: Reg_Cred}]}",
			wantFields: []string{"mutations.pullSecrets[0].secretName"},
			wantText:   "must be a secret name",
		},
		"pull secret rule twice": {
			doc:        "mutations: {pullSecrets: [{registry: docker.io, secretName: hub}, {registry: registry-1.docker.io, secretName: hub}]}",
			wantFields: []string{"mutations.pullSecrets[1]"},
		},
		"copying from a source namespace is not supported": {
			doc:        "mutations: {pullSecrets: [{registry: registry.example.com, secretName: regcred, sourceNamespace: shared}]}",
			wantFields: []string{"mutations.pullSecrets[0].sourceNamespace"},
			wantText:   "unknown field",
		},
		"unknown mutations field": {
			doc:        "mutations: {enable: true}",
			wantFields: []string{"mutations.enable"},
			wantText:   "fields here are enabled, mirrors, pinDigests, pullSecrets",
		},
		"invalid even when mutations are off": {
			doc:        "mutations: {enabled: false, mirrors: [{registry: docker.io, mirrors: []}]}",
			wantFields: []string{"mutations.mirrors[0].mirrors"},
		},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			p, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse() = %+v, want an error", p.Mutations)
			}
			if diff := cmp.Diff(tc.wantFields, fieldPaths(t, err)); diff != "" {
				t.Errorf("field paths mismatch (-want +got):\n%s\nerror: %v", diff, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
		})
	}
}

func TestMutationsEnabledFor(t *testing.T) {
	p := Default()
	p.ExemptNamespaces = []string{"infra"}
	if p.MutationsEnabledFor("apps", nil) {
		t.Errorf("enabled with mutations off")
	}
	p.Mutations.Enabled = true
	tests := []struct {
		namespace string
		labels    map[string]string
		want      bool
	}{
		{"apps", nil, true},
		{"infra", nil, false},
		{"apps", map[string]string{"pullgate.io/mode": "off"}, false},
		{"apps", map[string]string{"pullgate.io/mode": "warn"}, true},
		{"apps", map[string]string{"pullgate.io/mode": "bogus"}, true},
	}
	for _, tc := range tests {
		if got := p.MutationsEnabledFor(tc.namespace, tc.labels); got != tc.want {
			t.Errorf("MutationsEnabledFor(%q, %v) = %v, want %v", tc.namespace, tc.labels, got, tc.want)
		}
	}
}

func TestRegistryMatches(t *testing.T) {
	tests := []struct {
		entry, host string
		want        bool
	}{
		{"docker.io", "index.docker.io", true},
		{"index.docker.io", "index.docker.io", true},
		{"registry-1.docker.io", "index.docker.io", true},
		{"ghcr.io", "index.docker.io", false},
		{"registry.local", "registry.local:5000", true},
		{"registry.local:5000", "registry.local:5000", true},
		{"registry.local:5000", "registry.local", false},
		{"Registry.Local", "registry.local", true},
		{"127.0.0.1:5000", "127.0.0.1:5000", true},
		{"127.0.0.1:5000", "127.0.0.1:5001", false},
	}
	for _, tc := range tests {
		if got := RegistryMatches(tc.entry, tc.host); got != tc.want {
			t.Errorf("RegistryMatches(%q, %q) = %v, want %v", tc.entry, tc.host, got, tc.want)
		}
	}
}

func TestSplitMirror(t *testing.T) {
	tests := []struct {
		mirror, host, path string
		wantErr            bool
	}{
		{mirror: "mirror.internal", host: "mirror.internal"},
		{mirror: "mirror.internal:5000/dockerhub", host: "mirror.internal:5000", path: "dockerhub"},
		{mirror: "[fd00::1]:5000/a/b-c", host: "[fd00::1]:5000", path: "a/b-c"},
		{mirror: "", wantErr: true},
		{mirror: "https://mirror.internal", wantErr: true},
		{mirror: "mirror.internal/", wantErr: true},
		{mirror: "mirror.internal/a//b", wantErr: true},
		{mirror: "*.internal/a", wantErr: true},
		{mirror: "mirror.internal/A", wantErr: true},
	}
	for _, tc := range tests {
		host, path, err := SplitMirror(tc.mirror)
		if (err != nil) != tc.wantErr {
			t.Errorf("SplitMirror(%q) error = %v, want error %v", tc.mirror, err, tc.wantErr)
			continue
		}
		if host != tc.host || path != tc.path {
			t.Errorf("SplitMirror(%q) = %q, %q; want %q, %q", tc.mirror, host, path, tc.host, tc.path)
		}
	}
}

// TestReadmeMutationsExample keeps the documented mutations example valid.
func TestReadmeMutationsExample(t *testing.T) {
	readme, err := os.ReadFile("README-policy.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### Example mutations\\s*```yaml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README-policy.md has no example mutations block")
	}
	p, err := Parse(m[1])
	if err != nil {
		t.Fatalf("the README mutations example does not parse: %v", err)
	}
	if !p.Mutations.Enabled || len(p.Mutations.Mirrors) != 2 || len(p.Mutations.PullSecrets) != 1 {
		t.Errorf("the README mutations example is not what its comments say: %+v", p.Mutations)
	}
	// Written out and read back, as FuzzParse does for the rest of the policy.
	out, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse() rejects the policy it accepted once written out: %v\n%s", err, out)
	}
	if diff := cmp.Diff(p, again); diff != "" {
		t.Errorf("written out and read back, the policy changed (-first +again):\n%s", diff)
	}
}
