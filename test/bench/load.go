package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// newClient is how the load generator talks to webhooks: like kube-apiserver, over TLS with
// the CA it was given, HTTP/2 when the server offers it, connections kept alive.
func newClient(ca *x509.CertPool, concurrency int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: ca, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        concurrency * 2,
			MaxIdleConnsPerHost: concurrency * 2,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// reviewResponse is the part of an AdmissionReview response the benchmark checks.
type reviewResponse struct {
	Response *struct {
		UID      string   `json:"uid"`
		Allowed  bool     `json:"allowed"`
		Warnings []string `json:"warnings"`
		Status   *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

// expect says what a scenario's answers must look like; a different answer is counted as
// unexpected (and the first one is kept), not as a failed request.
type expect struct {
	allowed bool
	// warnings is whether warnings are expected (true) or forbidden (false).
	warnings bool
}

// phase is the outcome of driving a webhook for a while.
type phase struct {
	Latencies  []time.Duration
	Elapsed    time.Duration
	Errors     int
	Unexpected int
	FirstOdd   string
	Proto      string
}

// drive sends AdmissionReviews from bodies to url with concurrency workers until stop says
// so (it is asked before each request with the number of requests started so far) or ctx
// ends.
func drive(ctx context.Context, client *http.Client, url string, concurrency int, bodies *bodySource,
	want expect, stop func(started int64) bool) phase {
	var (
		started atomic.Int64
		mu      sync.Mutex
		out     phase
		wg      sync.WaitGroup
	)
	begin := time.Now()
	for range concurrency {
		wg.Go(func() {
			var lat []time.Duration
			var errs, odd int
			var firstOdd, proto string
			for ctx.Err() == nil {
				n := started.Add(1)
				if stop(n - 1) {
					break
				}
				body, uid := bodies.next()
				t0 := time.Now()
				p, problem, err := post(ctx, client, url, body, uid, want)
				d := time.Since(t0)
				switch {
				case err != nil:
					if ctx.Err() == nil { // not the benchmark being interrupted
						errs++
						if firstOdd == "" {
							firstOdd = err.Error()
						}
					}
				default:
					lat = append(lat, d)
					proto = p
					if problem != "" {
						odd++
						if firstOdd == "" {
							firstOdd = problem
						}
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			out.Latencies = append(out.Latencies, lat...)
			out.Errors += errs
			out.Unexpected += odd
			if out.FirstOdd == "" {
				out.FirstOdd = firstOdd
			}
			if proto != "" {
				out.Proto = proto
			}
		})
	}
	wg.Wait()
	out.Elapsed = time.Since(begin)
	return out
}

func post(ctx context.Context, client *http.Client, url string, body []byte, uid string, want expect) (proto, problem string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Proto, "", fmt.Errorf("HTTP %s: %.200s", resp.Status, raw)
	}
	var rr reviewResponse
	if err := json.Unmarshal(raw, &rr); err != nil {
		return resp.Proto, "", fmt.Errorf("decoding the response: %w", err)
	}
	r := rr.Response
	switch {
	case r == nil:
		return resp.Proto, "no response in the AdmissionReview", nil
	case r.UID != uid:
		return resp.Proto, fmt.Sprintf("response UID %q, want %q", r.UID, uid), nil
	case r.Allowed != want.allowed:
		msg := ""
		if r.Status != nil {
			msg = r.Status.Message
		}
		return resp.Proto, fmt.Sprintf("allowed=%v, want %v: %.300s %q", r.Allowed, want.allowed, msg, r.Warnings), nil
	case (len(r.Warnings) > 0) != want.warnings:
		return resp.Proto, fmt.Sprintf("warnings %q, want warnings=%v", r.Warnings, want.warnings), nil
	}
	return resp.Proto, "", nil
}

// stats summarises latencies.
type stats struct {
	Requests int     `json:"requests"`
	RPS      float64 `json:"requestsPerSecond"`
	P50      float64 `json:"p50Ms"`
	P99      float64 `json:"p99Ms"`
	Max      float64 `json:"maxMs"`
}

func summarize(lat []time.Duration, elapsed time.Duration) stats {
	if len(lat) == 0 {
		return stats{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return stats{
		Requests: len(s),
		RPS:      math.Round(float64(len(s))/elapsed.Seconds()*10) / 10,
		P50:      ms(percentile(s, 0.50)),
		P99:      ms(percentile(s, 0.99)),
		Max:      ms(s[len(s)-1]),
	}
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
