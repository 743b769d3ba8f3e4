package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDefault(t *testing.T) {
	want := &Policy{
		Checks: map[Check]Mode{
			CheckInvalidReference: Enforce,
			CheckExistence:        Enforce,
			CheckPullSecrets:      Enforce,
			CheckPlatform:         Enforce,
			CheckUnpinnedTag:      Warn,
			CheckRegistryAllowed:  Enforce,
		},
		OnRegistryError:           Warn,
		OnMissingSecretInTemplate: Warn,
		LookupTimeout:             metav1.Duration{Duration: 5 * time.Second},
		Cache: CachePolicy{
			TagTTL:      metav1.Duration{Duration: 5 * time.Minute},
			NegativeTTL: metav1.Duration{Duration: 2 * time.Second},
			MaxEntries:  10000,
		},
		NamespaceModeLabel: "pullgate.io/mode",
	}
	got := Default()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Default() mismatch (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	if len(got.ExemptNamespaces) != 0 {
		t.Errorf("Default() exempts namespaces %v; exemptions belong in the webhook configuration", got.ExemptNamespaces)
	}

	// Each call shares nothing with the others.
	got.Checks[CheckPlatform] = Off
	if m := Default().Checks[CheckPlatform]; m != Enforce {
		t.Errorf("changing one Default() changed another: platform = %q", m)
	}

	// Every known check has a default and is listed by Checks.
	if got, want := len(Checks()), len(defaultModes); got != want {
		t.Errorf("Checks() has %d checks, defaults cover %d", got, want)
	}
	for _, c := range Checks() {
		if _, ok := defaultModes[c]; !ok {
			t.Errorf("check %q has no default mode", c)
		}
	}
	if !slices.IsSorted(Checks()) {
		t.Errorf("Checks() = %v, not sorted", Checks())
	}
}

func TestParseValid(t *testing.T) {
	tests := map[string]struct {
		doc  string
		want func(p *Policy) // applied to Default()
	}{
		"empty document":     {doc: ""},
		"only whitespace":    {doc: "  \n\n"},
		"only comments":      {doc: "# nothing set\n"},
		"document separator": {doc: "---\n"},
		"null":               {doc: "null"},
		"empty object":       {doc: "{}"},
		"null checks":        {doc: "checks:\n"},
		"null sections":      {doc: "checks:\ncache:\nregistries:\nexemptImages:\n"},
		"trailing empty document": {
			doc:  "lookupTimeout: 3s\n---\n",
			want: func(p *Policy) { p.LookupTimeout.Duration = 3 * time.Second },
		},
		"a check left out keeps its default": {
			doc:  "checks:\n  unpinnedTag: enforce\n",
			want: func(p *Policy) { p.Checks[CheckUnpinnedTag] = Enforce },
		},
		"unquoted off is off": {
			doc: "checks:\n  platform: off\n  unpinnedTag: 'off'\n  existence: warn\n",
			want: func(p *Policy) {
				p.Checks[CheckPlatform] = Off
				p.Checks[CheckUnpinnedTag] = Off
				p.Checks[CheckExistence] = Warn
			},
		},
		"onRegistryError enforce": {
			doc:  "onRegistryError: enforce",
			want: func(p *Policy) { p.OnRegistryError = Enforce },
		},
		"onMissingSecretInTemplate enforce": {
			doc:  "onMissingSecretInTemplate: enforce",
			want: func(p *Policy) { p.OnMissingSecretInTemplate = Enforce },
		},
		"explicit zero TTLs are kept, not defaulted": {
			doc: "cache:\n  tagTTL: 0s\n  negativeTTL: 0s\n",
			want: func(p *Policy) {
				p.Cache.TagTTL.Duration = 0
				p.Cache.NegativeTTL.Duration = 0
			},
		},
		"cache partially set": {
			doc:  "cache:\n  maxEntries: 1000000\n",
			want: func(p *Policy) { p.Cache.MaxEntries = 1000000 },
		},
		"lookupTimeout at its bound": {
			doc:  "lookupTimeout: 25s",
			want: func(p *Policy) { p.LookupTimeout.Duration = 25 * time.Second },
		},
		"JSON is YAML": {
			doc: `{"lookupTimeout": "2s", "exemptNamespaces": ["a", "b"]}`,
			want: func(p *Policy) {
				p.LookupTimeout.Duration = 2 * time.Second
				p.ExemptNamespaces = []string{"a", "b"}
			},
		},
		"everything": {
			doc: `
checks:
  invalidReference: warn
  existence: warn
  pullSecrets: "off"
  platform: warn
  unpinnedTag: enforce
  registryAllowed: warn
onRegistryError: enforce
lookupTimeout: 20s
cache: {tagTTL: 1h, negativeTTL: 1s, maxEntries: 5}
exemptNamespaces: [ci]
exemptImages: ["registry.k8s.io/*", "docker.io/library/busybox:*"]
registries:
  allowed: [docker.io, "*.example.com", "registry.local:5000", "10.0.0.1", "[fd00::1]:5000"]
  denied: [bad.example.com]
  allowLoopback: true
  allowPrivateNetworks: true
  insecure: [registry.local]
namespaceModeLabel: example.com/pullgate
`,
			want: func(p *Policy) {
				p.Checks = map[Check]Mode{
					CheckInvalidReference: Warn, CheckExistence: Warn, CheckPullSecrets: Off,
					CheckPlatform: Warn, CheckUnpinnedTag: Enforce, CheckRegistryAllowed: Warn,
				}
				p.OnRegistryError = Enforce
				p.LookupTimeout.Duration = 20 * time.Second
				p.Cache = CachePolicy{
					TagTTL:      metav1.Duration{Duration: time.Hour},
					NegativeTTL: metav1.Duration{Duration: time.Second},
					MaxEntries:  5,
				}
				p.ExemptNamespaces = []string{"ci"}
				p.ExemptImages = []string{"registry.k8s.io/*", "docker.io/library/busybox:*"}
				p.Registries = RegistryPolicy{
					Allowed:              []string{"docker.io", "*.example.com", "registry.local:5000", "10.0.0.1", "[fd00::1]:5000"},
					Denied:               []string{"bad.example.com"},
					AllowLoopback:        true,
					AllowPrivateNetworks: true,
					Insecure:             []string{"registry.local"},
				}
				p.NamespaceModeLabel = "example.com/pullgate"
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			want := Default()
			if tc.want != nil {
				tc.want(want)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// fieldPaths returns the sorted field paths of the *ValidationError in err.
func fieldPaths(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	var paths []string
	for _, fe := range ve.Errors {
		paths = append(paths, fe.Field)
	}
	slices.Sort(paths)
	return paths
}

func TestParseInvalidFields(t *testing.T) {
	tests := map[string]struct {
		doc        string
		wantFields []string
		wantText   string // in the error message
	}{
		"misspelt check": {
			doc:        "checks: {platfrom: warn}",
			wantFields: []string{"checks.platfrom"},
			wantText:   `supported values: "existence", "invalidReference", "platform"`,
		},
		"unknown mode": {
			doc:        "checks: {existence: block}",
			wantFields: []string{"checks.existence"},
			wantText:   `"block": supported values: "enforce", "warn", "off"`,
		},
		"empty mode": {
			doc:        "checks: {existence: }",
			wantFields: []string{"checks.existence"},
		},
		"mode that is a number": {
			doc:        "checks: {existence: 1}",
			wantFields: []string{"checks.existence"},
		},
		"unquoted on is not a mode": {
			doc:        "checks: {existence: on}",
			wantFields: []string{"checks.existence"},
		},
		"onRegistryError off": {
			doc:        "onRegistryError: off",
			wantFields: []string{"onRegistryError"},
			wantText:   `supported values: "enforce", "warn"`,
		},
		"onRegistryError unknown": {
			doc:        "onRegistryError: deny",
			wantFields: []string{"onRegistryError"},
		},
		"onMissingSecretInTemplate off": {
			doc:        "onMissingSecretInTemplate: off",
			wantFields: []string{"onMissingSecretInTemplate"},
			wantText:   `supported values: "enforce", "warn"`,
		},
		"onMissingSecretInTemplate misspelt": {
			doc:        "onMissingSecretsInTemplate: warn",
			wantFields: []string{"onMissingSecretsInTemplate"},
		},
		"onMissingSecretInTemplate in the wrong case": {
			doc:        "OnMissingSecretInTemplate: warn",
			wantFields: []string{"OnMissingSecretInTemplate"},
		},
		"lookupTimeout zero": {
			doc:        "lookupTimeout: 0s",
			wantFields: []string{"lookupTimeout"},
			wantText:   "must be greater than 0",
		},
		"lookupTimeout negative": {
			doc:        "lookupTimeout: -1s",
			wantFields: []string{"lookupTimeout"},
		},
		"lookupTimeout too long": {
			doc:        "lookupTimeout: 26s",
			wantFields: []string{"lookupTimeout"},
			wantText:   "must be at most 25s",
		},
		"lookupTimeout not a duration": {
			doc:        "lookupTimeout: 5 minutes",
			wantFields: []string{"lookupTimeout"},
			wantText:   "must be a duration",
		},
		"lookupTimeout a number": {
			doc:        "lookupTimeout: 5",
			wantFields: []string{"lookupTimeout"},
			wantText:   "must be a duration string",
		},
		"lookupTimeout empty": {
			doc:        "lookupTimeout:",
			wantFields: []string{"lookupTimeout"},
		},
		"negative tagTTL": {
			doc:        "cache: {tagTTL: -1m}",
			wantFields: []string{"cache.tagTTL"},
			wantText:   "must not be negative",
		},
		"negative negativeTTL": {
			doc:        "cache: {negativeTTL: -1s}",
			wantFields: []string{"cache.negativeTTL"},
		},
		"bad negativeTTL": {
			doc:        "cache: {negativeTTL: soon}",
			wantFields: []string{"cache.negativeTTL"},
		},
		"maxEntries zero": {
			doc:        "cache: {maxEntries: 0}",
			wantFields: []string{"cache.maxEntries"},
			wantText:   "must be between 1 and 1000000",
		},
		"maxEntries too many": {
			doc:        "cache: {maxEntries: 1000001}",
			wantFields: []string{"cache.maxEntries"},
		},
		"exempt namespace not a name": {
			doc:        "exemptNamespaces: [ok, Not_OK]",
			wantFields: []string{"exemptNamespaces[1]"},
		},
		"exempt image bad pattern": {
			doc:        `exemptImages: ["registry.k8s.io/*", "registry.k8s.io/[pause"]`,
			wantFields: []string{"exemptImages[1]"},
			wantText:   "path.Match pattern",
		},
		"exempt image bad host-only pattern": {
			doc:        `exemptImages: ["quay.io/**", "[quay.io/**"]`,
			wantFields: []string{"exemptImages[1]"},
			wantText:   "path.Match pattern",
		},
		"node credentials with scheme": {
			doc:        `nodeCredentials: ["*.dkr.ecr.*.amazonaws.com", "*-docker.pkg.dev", "gcr.io", "*.gcr.io", "*.azurecr.io", "https://x.io"]`,
			wantFields: []string{"nodeCredentials[5]"},
			wantText:   "scheme",
		},
		"node credentials bad glob": {
			doc:        `nodeCredentials: ["[x.io", ""]`,
			wantFields: []string{"nodeCredentials[0]", "nodeCredentials[1]"},
		},
		"exempt image empty": {
			doc:        `exemptImages: [""]`,
			wantFields: []string{"exemptImages[0]"},
		},
		"registry with scheme": {
			doc:        "registries: {allowed: ['https://ghcr.io']}",
			wantFields: []string{"registries.allowed[0]"},
			wantText:   "without a scheme",
		},
		"registry with path": {
			doc:        "registries: {denied: [ghcr.io, ghcr.io/org]}",
			wantFields: []string{"registries.denied[1]"},
			wantText:   "without a path",
		},
		"registry bare IPv6": {
			doc:        "registries: {insecure: ['fd00::1']}",
			wantFields: []string{"registries.insecure[0]"},
			wantText:   "in brackets",
		},
		"registry bad port": {
			doc:        "registries: {allowed: ['registry.local:99999', 'registry.local:']}",
			wantFields: []string{"registries.allowed[0]", "registries.allowed[1]"},
		},
		"registry wildcard in the middle": {
			doc:        "registries: {allowed: ['a.*.example.com']}",
			wantFields: []string{"registries.allowed[0]"},
		},
		"registry bare wildcard": {
			doc:        "registries: {allowed: ['*']}",
			wantFields: []string{"registries.allowed[0]"},
		},
		"namespaceModeLabel not a label key": {
			doc:        "namespaceModeLabel: 'pullgate mode'",
			wantFields: []string{"namespaceModeLabel"},
			wantText:   "must be a label key",
		},
		"namespaceModeLabel empty": {
			doc:        `namespaceModeLabel: ""`,
			wantFields: []string{"namespaceModeLabel"},
		},
		"unknown top-level field": {
			doc:        "lookupTimout: 5s",
			wantFields: []string{"lookupTimout"},
			wantText:   "unknown field; fields here are cache, checks,",
		},
		"field names are case-sensitive": {
			doc:        "LookupTimeout: 5s",
			wantFields: []string{"LookupTimeout"},
		},
		"unknown nested field": {
			doc:        "cache: {tagTTl: 1m}",
			wantFields: []string{"cache.tagTTl"},
			wantText:   "fields here are maxEntries, negativeTTL, tagTTL",
		},
		"unknown registries field": {
			doc:        "registries: {allow: [ghcr.io]}",
			wantFields: []string{"registries.allow"},
		},
		"every problem at once": {
			doc: `
checks: {platfrom: warn, existence: block}
onRegistryError: off
lookupTimeout: 0s
cache: {tagTTL: -1s, maxEntries: 0, bogus: 1}
registries: {allowed: ["http://x"]}
namespaceModeLabel: "-"
`,
			wantFields: []string{
				"cache.bogus", "cache.maxEntries", "cache.tagTTL", "checks.existence", "checks.platfrom",
				"lookupTimeout", "namespaceModeLabel", "onRegistryError", "registries.allowed[0]",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse() = %+v, want an error", p)
			}
			if p != nil {
				t.Errorf("Parse() returned a policy with error %v", err)
			}
			if diff := cmp.Diff(tc.wantFields, fieldPaths(t, err)); diff != "" {
				t.Errorf("field paths mismatch (-want +got):\n%s\nerror: %v", diff, err)
			}
			for _, f := range tc.wantFields {
				if !strings.Contains(err.Error(), f+":") {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
		})
	}
}

func TestParseInvalidDocuments(t *testing.T) {
	tests := map[string]struct {
		doc      string
		wantText string
	}{
		"YAML syntax error":     {doc: "checks: [", wantText: "parsing policy YAML"},
		"duplicate key":         {doc: "lookupTimeout: 1s\nlookupTimeout: 2s\n", wantText: `key "lookupTimeout" already set`},
		"duplicate nested key":  {doc: "cache:\n  maxEntries: 1\n  maxEntries: 2\n", wantText: `key "maxEntries" already set`},
		"two documents":         {doc: "lookupTimeout: 1s\n---\nlookupTimeout: 2s\n", wantText: "must be one YAML document"},
		"policy after an empty": {doc: "---\n---\nlookupTimeout: 2s\n", wantText: "must be one YAML document"},
		"a list":                {doc: "- checks: {}", wantText: "decoding policy"},
		"a scalar":              {doc: "enforce", wantText: "decoding policy"},
		"wrong type":            {doc: "cache: {maxEntries: many}", wantText: "cache.maxEntries"},
		"checks not a map":      {doc: "checks: enforce", wantText: "checks"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse() = %+v, want an error", p)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("Parse() error = %q, want it to contain %q", err, tc.wantText)
			}
		})
	}
}

func TestParseSizeBound(t *testing.T) {
	// A valid document of exactly MaxSize bytes: a setting, then comment padding.
	head := "lookupTimeout: 7s\n"
	atLimit := []byte(head + "#" + strings.Repeat("x", MaxSize-len(head)-2) + "\n")
	if len(atLimit) != MaxSize {
		t.Fatalf("test document is %d bytes, want %d", len(atLimit), MaxSize)
	}
	p, err := Parse(atLimit)
	if err != nil {
		t.Fatalf("Parse(%d bytes) error = %v", len(atLimit), err)
	}
	if p.LookupTimeout.Duration != 7*time.Second {
		t.Errorf("lookupTimeout = %v, want 7s", p.LookupTimeout.Duration)
	}

	// One byte more is refused, and without being parsed: this one is not even YAML.
	over := append([]byte("checks: [\n"), atLimit[:MaxSize-9]...)
	if len(over) != MaxSize+1 {
		t.Fatalf("test document is %d bytes, want %d", len(over), MaxSize+1)
	}
	_, err = Parse(over)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Parse(%d bytes) error = %v, want ErrTooLarge", len(over), err)
	}
	if !strings.Contains(err.Error(), "1 MiB") {
		t.Errorf("error %q does not say what the limit is", err)
	}
}

func TestValidationErrorMessageIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("exemptNamespaces:\n")
	for range 100 {
		b.WriteString("- " + strings.Repeat("X", 10000) + "\n")
	}
	_, err := Parse([]byte(b.String()))
	if got := len(fieldPaths(t, err)); got != 100 {
		t.Errorf("got %d field errors, want 100", got)
	}
	if len(err.Error()) > 20*500 {
		t.Errorf("error message is %d bytes; bad values and the error count should be cut", len(err.Error()))
	}
	if !strings.Contains(err.Error(), "and 80 more errors") {
		t.Errorf("error message does not say how many errors it left out: %.300s", err)
	}
}

func TestValidateProgrammaticPolicy(t *testing.T) {
	if err := (&Policy{}).Validate(); err == nil {
		t.Fatal("Validate() of a zero policy = nil, want errors for its unset required fields")
	}
	p := Default()
	delete(p.Checks, CheckPlatform) // allowed: it keeps its default mode
	if err := p.Validate(); err != nil {
		t.Errorf("Validate() with a check left out = %v", err)
	}
	p.Checks["nope"] = Warn
	if diff := cmp.Diff([]string{"checks.nope"}, fieldPaths(t, p.Validate())); diff != "" {
		t.Errorf("field paths mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	p, err := LoadFile(write("good.yaml", []byte("onRegistryError: enforce\n")))
	if err != nil {
		t.Fatalf("LoadFile(good) error = %v", err)
	}
	if p.OnRegistryError != Enforce {
		t.Errorf("onRegistryError = %q, want enforce", p.OnRegistryError)
	}

	_, err = LoadFile(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadFile(missing) error = %v, want fs.ErrNotExist", err)
	}

	bad := write("bad.yaml", []byte("checks: {platfrom: warn}\n"))
	_, err = LoadFile(bad)
	if diff := cmp.Diff([]string{"checks.platfrom"}, fieldPaths(t, err)); diff != "" {
		t.Errorf("field paths mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(err.Error(), bad) {
		t.Errorf("error %q does not name the file", err)
	}

	_, err = LoadFile(write("huge.yaml", make([]byte, 3*MaxSize)))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("LoadFile(huge) error = %v, want ErrTooLarge", err)
	}
}

// readmeExample returns the example policy.yaml of README-policy.md.
func readmeExample(t testing.TB) []byte {
	t.Helper()
	readme, err := os.ReadFile("README-policy.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### Example `policy.yaml`\\s*```yaml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README-policy.md has no example policy.yaml block")
	}
	return m[1]
}

// TestReadmeExample keeps the documented example valid and its documented defaults true.
func TestReadmeExample(t *testing.T) {
	p, err := Parse(readmeExample(t))
	if err != nil {
		t.Fatalf("the README example does not parse: %v", err)
	}
	def := Default()
	if diff := cmp.Diff(def.Checks, p.Checks); diff != "" {
		t.Errorf("the README example's checks differ from the defaults (-default +example):\n%s", diff)
	}
	if diff := cmp.Diff(
		[]any{def.OnRegistryError, def.OnMissingSecretInTemplate, def.LookupTimeout, def.Cache, def.NamespaceModeLabel},
		[]any{p.OnRegistryError, p.OnMissingSecretInTemplate, p.LookupTimeout, p.Cache, p.NamespaceModeLabel},
	); diff != "" {
		t.Errorf("the README example's settings differ from the defaults (-default +example):\n%s", diff)
	}
	if !p.RegistryAllowed("123456789012.dkr.ecr.eu-west-1.amazonaws.com") || p.RegistryAllowed("quay.io") {
		t.Errorf("the README example's registries do not do what its comments say")
	}
}
