package registrycache

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// meteredTransport sits under go-containerregistry's transports, so it sees every request
// a lookup makes (pings, token exchanges, redirects, pages): it holds the host's
// concurrency slot, counts, times, and notes Retry-After and 401 challenges for the
// lookup.
type meteredTransport struct {
	c    *Cache
	base http.RoundTripper
	// preflight, when set, checks the dial policy before sending: the base transport is the
	// caller's, whose dialer the Cache does not control.
	preflight *dialGuard
}

func (t *meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	host := req.URL.Host
	if t.preflight != nil {
		if _, err := t.preflight.resolve(ctx, "tcp", req.URL.Hostname()); err != nil {
			return nil, err
		}
	}
	release, err := t.c.acquire(ctx, host)
	if err != nil {
		return nil, err
	}
	defer release()

	t.c.requests.Add(1)
	if charge, ok := ctx.Value(budgetHostKey{}).(budgetCharge); ok {
		charge.b.Add(charge.host)
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	registryRequestDuration.WithLabelValues(host).Observe(time.Since(start).Seconds())
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
		if cs, ok := ctx.Value(callStateKey{}).(*callState); ok {
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), t.c.o.now()); ok {
					cs.setRetryAfter(d)
				}
			case http.StatusUnauthorized:
				cs.setChallenges(host, resp.Header.Values("WWW-Authenticate"))
			}
		}
	}
	registryRequests.WithLabelValues(host, req.Method, code).Inc()
	return resp, err
}

// callState collects, across the HTTP requests of one lookup, what the error alone does not
// carry (go-containerregistry's transport.Error keeps no response headers).
type callState struct {
	mu         sync.Mutex
	retryAfter time.Duration
	hasRetry   bool
	// challenges are the WWW-Authenticate values of the latest 401 of each host, which
	// tell whether the registry still authenticates as its ping said. By host: a Bearer
	// registry's token server is another host, whose 401 says nothing about the registry.
	challenges map[string][]string
}

type callStateKey struct{}

func (s *callState) setRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hasRetry || d > s.retryAfter {
		s.retryAfter, s.hasRetry = d, true
	}
}

func (s *callState) getRetryAfter() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retryAfter, s.hasRetry
}

func (s *callState) setChallenges(host string, v []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.challenges == nil {
		s.challenges = make(map[string][]string, 1)
	}
	s.challenges[host] = slices.Clone(v)
}

func (s *callState) getChallenges(host string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.challenges[host]
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date (RFC 9110
// 10.2.3), capped at maxRateLimitHold.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(maxRateLimitHold/time.Second) {
			return maxRateLimitHold, true
		}
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = max(at.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(d, maxRateLimitHold), true
}

// withCallState returns ctx carrying a fresh callState.
func withCallState(ctx context.Context) (context.Context, *callState) {
	cs := &callState{}
	return context.WithValue(ctx, callStateKey{}, cs), cs
}
