package webhook

import (
	"fmt"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestHostileInput: inputs built to be expensive get a bounded answer, never a panic.
func TestHostileInput(t *testing.T) {
	w := newWorld(t)
	w.public.PushImage(t, "app", "v2", "linux", "amd64")
	var thousand []string
	for i := range 1000 {
		// Half exist, half do not; every image distinct, so none is deduplicated.
		if i%2 == 0 {
			thousand = append(thousand, w.public.Ref("app", fmt.Sprintf(":v%d", i+3)))
		} else {
			thousand = append(thousand, w.public.Ref(fmt.Sprintf("svc%d", i), ":v1"))
		}
	}
	longName := w.public.Host + "/" + strings.Repeat("a", 4096) + ":v1"
	tests := []struct {
		desc   string
		images []string
	}{
		{"a pod with 1,000 containers", thousand},
		{"an image name of 4 KiB", []string{longName}},
		{"an image name of 4 KiB that does not parse", []string{strings.Repeat("A/", 2048)}},
	}
	pol := basePolicy()
	pol.LookupTimeout = metav1.Duration{Duration: 5 * time.Second}
	v := w.validator(pol)
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			start := time.Now()
			resp := v.Handle(t.Context(), request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(tc.images...)), nil))
			elapsed := time.Since(start)
			if resp.Allowed {
				t.Fatalf("admitted")
			}
			msg := resp.Result.Message
			t.Logf("answered in %s; denial of %d bytes, %d warnings", elapsed.Round(time.Millisecond), len(msg), len(resp.Warnings))
			// The deadline holds, with room for the CPU of a thousand containers under -race
			// on a loaded machine: what this catches is an answer that waits on something
			// past the deadline, not a slow one (that is the benchmarks' business).
			if elapsed > 2*pol.LookupTimeout.Duration {
				t.Errorf("answered after %s; deadline %s", elapsed, pol.LookupTimeout.Duration)
			}
			if len(msg) > 16<<10 {
				t.Errorf("denial message of %d bytes; it must stay bounded", len(msg))
			}
			if len(resp.Warnings) > maxWarnings {
				t.Errorf("%d warnings; at most %d", len(resp.Warnings), maxWarnings)
			}
		})
	}
}
