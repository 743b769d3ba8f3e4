package policy

import (
	"testing"
)

func TestModeFor(t *testing.T) {
	p := Default()
	p.Checks[CheckPlatform] = Off
	custom := Default()
	custom.NamespaceModeLabel = "example.com/strictness"

	tests := map[string]struct {
		policy *Policy
		check  Check
		labels map[string]string
		want   Mode
	}{
		"no labels: the check's mode":       {p, CheckExistence, nil, Enforce},
		"no labels: a warn check":           {p, CheckUnpinnedTag, nil, Warn},
		"no labels: a check turned off":     {p, CheckPlatform, nil, Off},
		"unrelated labels":                  {p, CheckUnpinnedTag, map[string]string{"team": "a"}, Warn},
		"namespace warn softens enforce":    {p, CheckExistence, map[string]string{"pullgate.io/mode": "warn"}, Warn},
		"namespace enforce hardens warn":    {p, CheckUnpinnedTag, map[string]string{"pullgate.io/mode": "enforce"}, Enforce},
		"namespace enforce turns on off":    {p, CheckPlatform, map[string]string{"pullgate.io/mode": "enforce"}, Enforce},
		"namespace off":                     {p, CheckPullSecrets, map[string]string{"pullgate.io/mode": "off"}, Off},
		"invalid label value is ignored":    {p, CheckExistence, map[string]string{"pullgate.io/mode": "relaxed"}, Enforce},
		"label values are case-sensitive":   {p, CheckExistence, map[string]string{"pullgate.io/mode": "Off"}, Enforce},
		"empty label value is ignored":      {p, CheckUnpinnedTag, map[string]string{"pullgate.io/mode": ""}, Warn},
		"custom label key":                  {custom, CheckExistence, map[string]string{"example.com/strictness": "warn"}, Warn},
		"default key ignored when replaced": {custom, CheckExistence, map[string]string{"pullgate.io/mode": "off"}, Enforce},
		"check left out of Checks":          {&Policy{NamespaceModeLabel: "m"}, CheckUnpinnedTag, nil, Warn},
		"unknown check warns":               {p, Check("nope"), nil, Warn},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.policy.ModeFor(tc.check, tc.labels); got != tc.want {
				t.Errorf("ModeFor(%q, %v) = %q, want %q", tc.check, tc.labels, got, tc.want)
			}
		})
	}
}

func TestRegistryErrorMode(t *testing.T) {
	warn := Default()
	enforce := Default()
	enforce.OnRegistryError = Enforce
	label := func(v string) map[string]string { return map[string]string{DefaultNamespaceModeLabel: v} }

	tests := map[string]struct {
		policy *Policy
		labels map[string]string
		want   Mode
	}{
		"default warns":                      {warn, nil, Warn},
		"configured enforce":                 {enforce, nil, Enforce},
		"namespace off turns it off":         {enforce, label("off"), Off},
		"namespace warn softens enforce":     {enforce, label("warn"), Warn},
		"namespace enforce keeps warn":       {warn, label("enforce"), Warn},
		"namespace enforce keeps enforce":    {enforce, label("enforce"), Enforce},
		"invalid label ignored":              {enforce, label("strict"), Enforce},
		"unset OnRegistryError falls back":   {&Policy{}, nil, Warn},
		"invalid OnRegistryError falls back": {&Policy{OnRegistryError: Off}, nil, Warn},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.policy.RegistryErrorMode(tc.labels); got != tc.want {
				t.Errorf("RegistryErrorMode(%v) = %q, want %q", tc.labels, got, tc.want)
			}
		})
	}
}

func TestMissingSecretInTemplateMode(t *testing.T) {
	warn := Default()
	enforce := Default()
	enforce.OnMissingSecretInTemplate = Enforce
	secretsWarn := Default()
	secretsWarn.Checks[CheckPullSecrets] = Warn
	secretsOff := Default()
	secretsOff.OnMissingSecretInTemplate = Enforce
	secretsOff.Checks[CheckPullSecrets] = Off
	label := func(v string) map[string]string { return map[string]string{DefaultNamespaceModeLabel: v} }

	tests := map[string]struct {
		policy *Policy
		labels map[string]string
		want   Mode
	}{
		"default warns":                          {warn, nil, Warn},
		"configured enforce":                     {enforce, nil, Enforce},
		"pullSecrets warn wins over enforce":     {secretsWarn, nil, Warn},
		"pullSecrets off wins over enforce":      {secretsOff, nil, Off},
		"namespace off turns it off":             {enforce, label("off"), Off},
		"namespace warn softens enforce":         {enforce, label("warn"), Warn},
		"namespace enforce keeps warn":           {warn, label("enforce"), Warn},
		"namespace enforce keeps enforce":        {enforce, label("enforce"), Enforce},
		"unset field falls back to warn":         {&Policy{}, nil, Warn},
		"invalid field falls back to warn":       {&Policy{OnMissingSecretInTemplate: Off}, nil, Warn},
		"namespace enforce over pullSecrets off": {secretsOff, label("enforce"), Enforce},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.policy.MissingSecretInTemplateMode(tc.labels); got != tc.want {
				t.Errorf("MissingSecretInTemplateMode(%v) = %q, want %q", tc.labels, got, tc.want)
			}
		})
	}
}

func TestAllOff(t *testing.T) {
	everyCheckOff := Default()
	for _, c := range Checks() {
		everyCheckOff.Checks[c] = Off
	}
	label := func(v string) map[string]string { return map[string]string{DefaultNamespaceModeLabel: v} }
	tests := map[string]struct {
		policy *Policy
		labels map[string]string
		want   bool
	}{
		"default policy":                              {Default(), nil, false},
		"namespace labelled off":                      {Default(), label("off"), true},
		"namespace labelled warn":                     {Default(), label("warn"), false},
		"every check off, registry errors still warn": {everyCheckOff, nil, false},
		"every check off, namespace labelled off":     {everyCheckOff, label("off"), true},
		"every check off, namespace labelled enforce": {everyCheckOff, label("enforce"), false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.policy.AllOff(tc.labels); got != tc.want {
				t.Errorf("AllOff(%v) = %v, want %v", tc.labels, got, tc.want)
			}
		})
	}
}

func TestNamespaceExempt(t *testing.T) {
	p := Default()
	if p.NamespaceExempt("kube-system") {
		t.Error("the default policy exempts kube-system in code; the webhook configuration does that")
	}
	p.ExemptNamespaces = []string{"ci", "scratch"}
	for ns, want := range map[string]bool{"ci": true, "scratch": true, "c": false, "ci-2": false, "": false} {
		if got := p.NamespaceExempt(ns); got != want {
			t.Errorf("NamespaceExempt(%q) = %v, want %v", ns, got, want)
		}
	}
}

func TestImageExempt(t *testing.T) {
	p := Default()
	p.ExemptImages = []string{
		"registry.k8s.io/*",
		"docker.io/library/busybox:*",
		"index.docker.io/bitnami/*:1.?",
		"ghcr.io/org/app@sha256:*",
		"registry.local:5000/team/[ab]*",
		"quay.example.com/**",
		"*.corp.example/**",
		"ghcr.io/acme/**",
	}
	tests := map[string]bool{
		"quay.example.com/a:1":                        true, // host-only pattern, any depth
		"quay.example.com/a/b/c@sha256:0123":          true,
		"quay.example.com.evil.com/a:1":               false,
		"quay.example.com":                            false,
		"r1.corp.example/x/y:2":                       true,
		"corp.example/x:2":                            false,
		"ghcr.io/acme/app:v1":                         true,
		"ghcr.io/acme/team/app:v1":                    true,
		"ghcr.io/acmecorp/app:v1":                     false,
		"ghcr.io/acme":                                false,
		"registry.k8s.io/pause:3.10":                  true,
		"registry.k8s.io/sig-storage/csi-attacher:v4": false, // * does not cross /
		"registry.k8s.io.evil.com/pause:3.10":         false,
		"docker.io/library/busybox:1.36":              true,
		"index.docker.io/library/busybox:1.36":        true, // the other spelling of Docker Hub
		"docker.io/library/busybox@sha256:abc":        false,
		"docker.io/library/alpine:3":                  false,
		"docker.io/bitnami/redis:1.2":                 true,
		"docker.io/bitnami/redis:1.22":                false,
		"ghcr.io/org/app@sha256:0123":                 true,
		"ghcr.io/org/app:v1":                          false,
		"registry.local:5000/team/api:v1":             true,
		"registry.local:5000/team/web:v1":             false,
		"":                                            false,
	}
	for ref, want := range tests {
		t.Run(ref, func(t *testing.T) {
			if got := p.ImageExempt(ref); got != want {
				t.Errorf("ImageExempt(%q) = %v, want %v", ref, got, want)
			}
		})
	}
	if Default().ImageExempt("registry.k8s.io/pause:3.10") {
		t.Error("the default policy exempts an image")
	}
}

func TestRegistryAllowed(t *testing.T) {
	open := Default()
	denyOnly := Default()
	denyOnly.Registries.Denied = []string{"bad.example.com", "*.evil.com", "docker.io"}
	allow := Default()
	allow.Registries.Allowed = []string{
		"ghcr.io", "*.example.com", "registry.local:5000", "10.1.2.3", "[fd00::1]:5000", "Quay.IO", "index.docker.io",
	}
	allow.Registries.Denied = []string{"bad.example.com", "ghcr.io:8443"}

	tests := map[string]struct {
		policy *Policy
		host   string
		want   bool
	}{
		"empty lists allow all":                   {open, "anything.example.org", true},
		"denied exact":                            {denyOnly, "bad.example.com", false},
		"denied wildcard subdomain":               {denyOnly, "a.evil.com", false},
		"denied wildcard not the apex":            {denyOnly, "evil.com", true},
		"denied docker.io covers index.docker.io": {denyOnly, "index.docker.io", false},
		"denied docker.io covers registry-1":      {denyOnly, "registry-1.docker.io", false},
		"not denied, empty allowed":               {denyOnly, "ghcr.io", true},
		"allowed exact":                           {allow, "ghcr.io", true},
		"allowed exact any port":                  {allow, "ghcr.io:443", true},
		"denied port wins over allowed host":      {allow, "ghcr.io:8443", false},
		"allowed case-insensitive host":           {allow, "GHCR.io", true},
		"allowed case-insensitive entry":          {allow, "quay.io", true},
		"wildcard one level":                      {allow, "a.example.com", true},
		"wildcard two levels":                     {allow, "a.b.example.com", true},
		"wildcard with port on host":              {allow, "a.example.com:5000", true},
		"wildcard not the apex":                   {allow, "example.com", false},
		"wildcard not a suffix lookalike":         {allow, "badexample.com", false},
		"denied wins over wildcard allow":         {allow, "bad.example.com", false},
		"entry with port matches that port":       {allow, "registry.local:5000", true},
		"entry with port not another port":        {allow, "registry.local:5001", false},
		"entry with port not the bare host":       {allow, "registry.local", false},
		"IPv4":                                    {allow, "10.1.2.3:8080", true},
		"IPv6 with port":                          {allow, "[fd00::1]:5000", true},
		"IPv6 other spelling":                     {allow, "[fd00:0::1]:5000", true},
		"IPv6 other port":                         {allow, "[fd00::1]:5001", false},
		"docker hub alias allowed":                {allow, "docker.io", true},
		"not in allowed":                          {allow, "gcr.io", false},
		"malformed host with an allow list":       {allow, "https://ghcr.io", false},
		"malformed host, no allow list":           {open, "not a host", true},
		"wildcard is not a host":                  {allow, "*.example.com", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.policy.RegistryAllowed(tc.host); got != tc.want {
				t.Errorf("RegistryAllowed(%q) = %v, want %v", tc.host, got, tc.want)
			}
		})
	}
}

func TestInsecureRegistry(t *testing.T) {
	p := Default()
	p.Registries.Insecure = []string{"registry.local", "*.lab.internal:5000"}
	for host, want := range map[string]bool{
		"registry.local":          true,
		"registry.local:5000":     true,
		"a.lab.internal:5000":     true,
		"a.lab.internal":          false,
		"ghcr.io":                 false,
		"registry.local.evil.com": false,
	} {
		if got := p.InsecureRegistry(host); got != want {
			t.Errorf("InsecureRegistry(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseHostEntry(t *testing.T) {
	valid := map[string]hostEntry{
		"ghcr.io":              {host: "ghcr.io"},
		"GHCR.IO":              {host: "ghcr.io"},
		"registry.local:5000":  {host: "registry.local", port: "5000"},
		"registry.local:05000": {host: "registry.local", port: "5000"},
		"*.example.com":        {host: "example.com", wildcard: true},
		"*.example.com:443":    {host: "example.com", port: "443", wildcard: true},
		"localhost":            {host: "localhost"},
		"10.0.0.1:80":          {host: "10.0.0.1", port: "80"},
		"[::1]":                {host: "::1"},
		"[FD00:0::1]:5000":     {host: "fd00::1", port: "5000"},
	}
	for s, want := range valid {
		got, err := parseHostEntry(s)
		if err != nil {
			t.Errorf("parseHostEntry(%q) error = %v", s, err)
			continue
		}
		if got != want {
			t.Errorf("parseHostEntry(%q) = %+v, want %+v", s, got, want)
		}
	}
	for _, s := range []string{
		"", "https://ghcr.io", "ghcr.io/org", "ghcr.io:", "ghcr.io:0", "ghcr.io:65536", "ghcr.io:+80",
		"ghcr.io:http", "*", "*.", "**.example.com", "a.*.com", "*.10.0.0.1", "fd00::1", "[fd00::1",
		"[10.0.0.1]", "[fd00::1]x", "[fd00::1]:", "under_score.io", "-a.io", "a b", "example.com.",
	} {
		if got, err := parseHostEntry(s); err == nil {
			t.Errorf("parseHostEntry(%q) = %+v, want an error", s, got)
		}
	}
}
