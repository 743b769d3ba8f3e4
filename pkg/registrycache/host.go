package registrycache

import (
	"context"
	"fmt"
	"sync"
	"time"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/pullgate/pullgate/pkg/lookup"
)

// hostState is what the Cache knows about one registry host: its concurrency slots, its
// circuit breaker, how long it asked to be left alone, and its answer to the ping.
type hostState struct {
	host string
	sem  chan struct{}

	mu           sync.Mutex
	failures     int         // consecutive failed lookups
	lastFailure  lookup.Kind // kind of the latest of them
	openUntil    time.Time   // non-zero while the circuit is open or half-open
	trial        bool        // a half-open trial lookup is in flight
	limitedUntil time.Time   // Retry-After of the latest 429

	// openErr is the error lookups get while the circuit is open until openErrFor, built
	// once per opening.
	openErr    *lookup.Error
	openErrFor time.Time

	// pings are the registry's answers to the ping, by the schemes allowed for the
	// reference that asked (schemeKey: whether http is tried); gen is the generation they,
	// and the transports built from them, belong to. Forgetting the answers moves gen on,
	// which makes those transports stale.
	pings map[string]*pingAnswer
	gen   uint64
}

// pingAnswer returns the answer kept for references allowed these schemes (a schemeKey), or
// nil, and the current generation.
func (h *hostState) pingAnswer(schemes string) (*pingAnswer, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pings[schemes], h.gen
}

// setPingAnswer keeps a, obtained in generation gen, unless the answers were forgotten
// since (a ping in flight while the circuit opened must not bring its answer back) or
// another ping's answer was kept first. It returns the answer kept, or a.
func (h *hostState) setPingAnswer(schemes string, a *pingAnswer, gen uint64) *pingAnswer {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gen != gen {
		return a
	}
	if kept, ok := h.pings[schemes]; ok {
		return kept
	}
	if h.pings == nil {
		h.pings = make(map[string]*pingAnswer, 1)
	}
	h.pings[schemes] = a
	return a
}

// forgetPingsLocked drops the ping answers and, by moving to generation gen, every
// transport built from them. h.mu must be held.
func (h *hostState) forgetPingsLocked(gen uint64) {
	h.pings = nil
	h.gen = gen
}

// unauthorized takes the WWW-Authenticate challenges of a 401 that ended a lookup and
// forgets the ping answers that they show no longer hold, so that the next lookup pings
// again.
func (c *Cache) unauthorized(h *hostState, challenges []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.pings {
		if !a.heldBy(challenges) {
			h.forgetPingsLocked(c.gens.Add(1))
			return
		}
	}
}

// rejectOpen returns, without taking a half-open trial, the error for a lookup while the
// circuit is open (and not yet due for a trial); nil otherwise. It lets Cache.get fail such
// lookups before singleflight, timers and error formatting.
func (h *hostState) rejectOpen(now time.Time) *lookup.Error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.openUntil.IsZero() || !now.Before(h.openUntil) {
		return nil
	}
	if h.openErr == nil || !h.openErrFor.Equal(h.openUntil) {
		h.openErr = &lookup.Error{
			Kind: lookup.KindUnreachable,
			Host: h.host,
			Err: fmt.Errorf("circuit breaker open until %s after %d consecutive failures (last: %s); not contacting the registry",
				h.openUntil.UTC().Format(time.RFC3339), h.failures, h.lastFailure),
		}
		h.openErrFor = h.openUntil
	}
	e := *h.openErr
	return &e
}

// host returns the state of host, creating it on first use. States live in an LRU so that
// hosts named by pod specs cannot grow memory without bound.
func (c *Cache) host(host string) *hostState {
	c.hostsMu.Lock()
	defer c.hostsMu.Unlock()
	if hs, ok := c.hosts.Get(host); ok {
		return hs
	}
	hs := &hostState{host: host, sem: make(chan struct{}, c.o.hostConcurrency), gen: c.gens.Add(1)}
	c.hosts.Add(host, hs)
	return hs
}

// acquire takes one of host's concurrency slots, or gives up when ctx ends.
func (c *Cache) acquire(ctx context.Context, host string) (release func(), err error) {
	sem := c.host(host).sem
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a connection slot to %s: %w", host, ctx.Err())
	}
}

// admit says whether a lookup may contact the host now. trial is true when the lookup is the
// one let through a half-open circuit; it must be reported to record.
func (h *hostState) admit(now time.Time) (trial bool, err *lookup.Error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Before(h.limitedUntil) {
		return false, &lookup.Error{
			Kind:       lookup.KindRateLimited,
			Host:       h.host,
			RetryAfter: h.limitedUntil.Sub(now),
			Err: fmt.Errorf("the registry asked not to be contacted before %s (Retry-After); not contacting it",
				h.limitedUntil.UTC().Format(time.RFC3339)),
		}
	}
	if h.openUntil.IsZero() {
		return false, nil
	}
	if now.Before(h.openUntil) {
		return false, &lookup.Error{
			Kind: lookup.KindUnreachable,
			Host: h.host,
			Err: fmt.Errorf("circuit breaker open until %s after %d consecutive failures (last: %s); not contacting the registry",
				h.openUntil.UTC().Format(time.RFC3339), h.failures, h.lastFailure),
		}
	}
	if h.trial {
		return false, &lookup.Error{
			Kind: lookup.KindUnreachable,
			Host: h.host,
			Err: fmt.Errorf("circuit breaker half-open after %d consecutive failures (last: %s): a trial request is in flight; not contacting the registry",
				h.failures, h.lastFailure),
		}
	}
	h.trial = true
	return true, nil
}

// breakerFailure reports whether a lookup that ended with kind counts against the host's
// circuit. Verdicts are answers, so they do not; neither do outcomes that did not test the
// host (blocked by policy, rate limited).
func breakerFailure(kind lookup.Kind) bool {
	switch kind {
	case lookup.KindTimeout, lookup.KindUnreachable, lookup.KindServerError:
		return true
	}
	return false
}

// record takes the outcome of a lookup admitted at admit: le is nil on success.
func (c *Cache) record(ctx context.Context, h *hostState, le *lookup.Error, trial bool) {
	now := c.o.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if trial {
		h.trial = false
	}
	if le != nil && le.Kind == lookup.KindRateLimited {
		h.limitedUntil = now.Add(le.RetryAfter)
	}
	switch {
	case le == nil || le.Kind.IsVerdict():
		if !h.openUntil.IsZero() {
			logf.FromContext(ctx).Info("registry circuit closed", "host", h.host)
			circuitOpen.WithLabelValues(h.host).Set(0)
		}
		h.failures, h.openUntil = 0, time.Time{}
	case breakerFailure(le.Kind):
		h.failures++
		h.lastFailure = le.Kind
		if c.o.breakerFailures > 0 && h.failures >= c.o.breakerFailures {
			h.openUntil = now.Add(c.o.breakerOpenFor)
			// A registry that fails this often may come back changed (moved, behind
			// other auth): the trial lookup pings again rather than trust the old answer.
			h.forgetPingsLocked(c.gens.Add(1))
			logf.FromContext(ctx).Info("registry circuit opened", "host", h.host,
				"failures", h.failures, "last", le.Kind.String(), "until", h.openUntil)
			circuitOpen.WithLabelValues(h.host).Set(1)
		}
	}
}
