package main

import (
	"testing"
	"time"
)

func TestEndpointOf(t *testing.T) {
	for _, tc := range []struct{ path, kind, repo string }{
		{"/v2/", "ping", ""},
		{"/v2", "ping", ""},
		{"/v2/bench/shop-web/manifests/1.4.2", "manifests", "bench/shop-web"},
		{"/v2/a/manifests/b/manifests/sha256:00", "manifests", "a/manifests/b"},
		{"/v2/bench/envoy/blobs/sha256:00", "blobs", "bench/envoy"},
		{"/v2/burst/checkout/tags/list", "tags", "burst/checkout"},
		{"/v2/_catalog", "other", ""},
	} {
		kind, repo := endpointOf(tc.path)
		if kind != tc.kind || repo != tc.repo {
			t.Errorf("endpointOf(%q) = %q, %q; want %q, %q", tc.path, kind, repo, tc.kind, tc.repo)
		}
	}
}

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	got := summarize(lat, 2*time.Second)
	want := stats{Requests: 100, RPS: 50, P50: 50, P99: 99, Max: 100}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if lat[0] != 100*time.Millisecond {
		t.Error("summarize sorted its input in place")
	}
	if got := summarize(nil, time.Second); got != (stats{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
}

func TestRequestCounts(t *testing.T) {
	c := requestCounts{"HEAD manifests": 2, "HEAD manifests burst/checkout": 1, "GET ping": 1}
	if got := c.total(); got != 3 {
		t.Errorf("total = %d, want 3 (per-repository lines are not counted again)", got)
	}
	if got := c.repo("HEAD", "manifests", "burst/checkout"); got != 1 {
		t.Errorf("repo = %d, want 1", got)
	}
	if got, want := c.summary(), "GET ping=1, HEAD manifests=2"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
}
