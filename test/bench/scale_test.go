package main

import (
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestCountsFor(t *testing.T) {
	got := countsFor(50000)
	want := scaleCounts{Secrets: 50000, ServiceAccounts: 10000, Nodes: 5000, Namespaces: 5000}
	if got != want {
		t.Errorf("countsFor(50000) = %+v, want %+v", got, want)
	}
}

func TestVMRSS(t *testing.T) {
	rss, err := vmRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 {
		t.Errorf("vmRSS = %v, want > 0", rss)
	}
	if _, err := vmRSS(-1); err == nil {
		t.Error("vmRSS(-1): no error")
	}
}

func TestPolicyReady(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		status map[string]any
		want   bool
	}{
		{"no status", nil, false},
		{"Ready True", map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}, true},
		{"Ready False", map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "False"}}}, false},
		{"another condition", map[string]any{"conditions": []any{map[string]any{"type": "Other", "status": "True"}}}, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: map[string]any{}}
			if tc.status != nil {
				u.Object["status"] = tc.status
			}
			if got := policyReady(u); got != tc.want {
				t.Errorf("policyReady = %v, want %v", got, tc.want)
			}
		})
	}
}

// The secrets the scale mode loads: every kind the mix names, and docker configs that
// pullgate would parse.
func TestScaleSecretMix(t *testing.T) {
	l := &scaleLoader{blob: make([]byte, 64<<10)}
	types := map[string]int{}
	for i := range 20 {
		s := l.secret(i)
		types[string(s.Type)]++
		if len(s.Data) == 0 {
			t.Errorf("secret %d (%s) has no data", i, s.Type)
		}
	}
	want := map[string]int{"kubernetes.io/dockerconfigjson": 4, "kubernetes.io/dockercfg": 1, "Opaque": 8, "kubernetes.io/tls": 5, "helm.sh/release.v1": 2}
	for k, n := range want {
		if types[k] != n {
			t.Errorf("%d secrets of type %s in 20, want %d (all: %v)", types[k], k, n, types)
		}
	}
}
