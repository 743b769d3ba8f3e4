package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"sigs.k8s.io/yaml"
)

// FuzzParse checks that Parse never panics, that what it accepts is valid, and that an
// accepted policy survives being written out and read back unchanged.
func FuzzParse(f *testing.F) {
	f.Add(readmeExample(f))
	for _, seed := range []string{
		"",
		"{}",
		"checks: {unpinnedTag: enforce, platform: off}",
		"onRegistryError: enforce\nlookupTimeout: 25s\n",
		"cache: {tagTTL: 0s, negativeTTL: 1h, maxEntries: 1}",
		"exemptNamespaces: [ci]\nexemptImages: ['registry.k8s.io/*']",
		"registries: {allowed: ['*.example.com', 'registry.local:5000', '[fd00::1]:5000'], denied: [docker.io]}",
		"namespaceModeLabel: example.com/mode",
		"checks: {platfrom: warn}",
		"lookupTimeout: 5",
		"a: &a [*a]",
		"---\n---\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatalf("Parse() returned a policy with error %v", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse() accepted a policy that does not validate: %v", err)
		}
		out, err := yaml.Marshal(p)
		if err != nil {
			t.Fatalf("marshalling an accepted policy: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse() rejects the policy it accepted once written out: %v\n%s", err, out)
		}
		if diff := cmp.Diff(p, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("written out and read back, the policy changed (-first +again):\n%s", diff)
		}
		// The decisions must not panic on whatever was accepted.
		labels := map[string]string{p.NamespaceModeLabel: "warn"}
		for _, c := range Checks() {
			p.ModeFor(c, labels)
		}
		p.RegistryErrorMode(labels)
		p.ImageExempt("docker.io/library/busybox:1.36")
		p.RegistryAllowed("registry.local:5000")
	})
}
