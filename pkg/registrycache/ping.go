package registrycache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// A registry's transport comes from transport.NewWithContext, which pings /v2/ to learn the
// scheme and the auth challenge. Built per repository (as remote does for each new
// Puller target), that ping is one more round trip in front of every first-seen image. The
// answer belongs to the registry, not the repository, and the ping carries no credentials,
// so the Cache pings a registry once (per the schemes allowed for it), keeps the answer in the host's
// state, and replays it to NewWithContext. Anonymous and Basic transports are then shared
// by every repository of the registry for one credential identity; Bearer transports hold
// a token scoped to one repository and stay per repository, but skip the ping as well.
//
// Replaying rather than building from the answer: transport.FromToken builds a transport
// from a Challenge without a ping, but without the scheme (https or http, as the ping
// found) and User-Agent handling NewWithContext adds, and its token from transport.Exchange
// would ignore a RegistryToken and an access_token answer. Replayed, the answer goes
// through every step of NewWithContext as go-containerregistry wrote them.

// pingAnswer is what a registry answered to an unauthenticated GET /v2/.
type pingAnswer struct {
	challenge *transport.Challenge

	// The response as sent, for replaying it: host, the URL scheme that answered, the
	// status (200 or 401) and the WWW-Authenticate values. replayable is false when it
	// could not be recorded (a redirected ping); then every transport built pings on its
	// own, per repository, as go-containerregistry does.
	host         string
	scheme       string
	status       int
	authenticate []string
	replayable   bool
}

// bearer reports whether transports built from the answer exchange tokens, which are
// scoped to a repository.
func (a *pingAnswer) bearer() bool { return strings.EqualFold(a.challenge.Scheme, "bearer") }

// heldBy reports whether the ping answer still describes a registry that refused a
// request with these WWW-Authenticate challenges (the registry's own, not its token
// server's). A registry that pinged as anonymous and now refuses, or that now challenges
// with another scheme than the ping's (Basic, Bearer), changed its authentication:
// transports built from the old answer would keep failing.
func (a *pingAnswer) heldBy(challenges []string) bool {
	if a.status == http.StatusOK {
		return false
	}
	for _, ch := range challenges {
		scheme, _, _ := strings.Cut(strings.TrimSpace(ch), " ")
		if strings.EqualFold(scheme, a.challenge.Scheme) {
			return true
		}
	}
	return false
}

func (a *pingAnswer) response(req *http.Request) *http.Response {
	h := make(http.Header, 1)
	for _, v := range a.authenticate {
		h.Add("WWW-Authenticate", v)
	}
	return &http.Response{
		Status:     fmt.Sprintf("%d %s", a.status, http.StatusText(a.status)),
		StatusCode: a.status,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Request:    req,
	}
}

// isPing reports whether req is go-containerregistry's ping of host.
func isPing(req *http.Request, host string) bool {
	return req.Method == http.MethodGet && req.URL.Path == "/v2/" && req.URL.Host == host &&
		req.Header.Get("Authorization") == ""
}

// pingRecorder keeps the responses to the pings sent through it, by URL scheme:
// transport.Ping may race https against http.
type pingRecorder struct {
	inner http.RoundTripper
	host  string

	mu      sync.Mutex
	answers map[string]*http.Response // header-only copies
}

func (r *pingRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.inner.RoundTrip(req)
	// A redirected ping is not recorded: its answer came from another URL than the one
	// NewWithContext will ask.
	if err == nil && req.Response == nil && isPing(req, r.host) &&
		(resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized) {
		r.mu.Lock()
		if r.answers == nil {
			r.answers = make(map[string]*http.Response, 2)
		}
		r.answers[req.URL.Scheme] = &http.Response{StatusCode: resp.StatusCode, Header: resp.Header.Clone()}
		r.mu.Unlock()
	}
	return resp, err
}

func (r *pingRecorder) answer(pr *transport.Challenge) *pingAnswer {
	a := &pingAnswer{challenge: pr, host: r.host, scheme: "https"}
	if pr.Insecure {
		a.scheme = "http"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if resp, ok := r.answers[a.scheme]; ok {
		a.status = resp.StatusCode
		a.authenticate = slices.Clone(resp.Header.Values("WWW-Authenticate"))
		a.replayable = true
	}
	return a
}

// pingReplay answers go-containerregistry's ping from a recorded answer and sends every
// other request on.
type pingReplay struct {
	inner  http.RoundTripper
	answer *pingAnswer
}

func (t *pingReplay) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isPing(req, t.answer.host) {
		return t.inner.RoundTrip(req)
	}
	if req.Body != nil {
		_ = req.Body.Close()
	}
	if req.URL.Scheme != t.answer.scheme {
		// Only the loser of transport.Ping's https/http race asks this: fail it at once,
		// as it failed (or lost) when the registry was pinged.
		return nil, fmt.Errorf("not pinging %s over %s: it answered over %s", t.answer.host, req.URL.Scheme, t.answer.scheme)
	}
	return t.answer.response(req), nil
}

// cachedTransport is a transport and the generation of the host's ping answers it was
// built from; it is stale once the host's generation moves on.
type cachedTransport struct {
	rt  http.RoundTripper
	gen uint64
}

// ping returns reg's answer to the ping, asking the registry only when the host's state
// has none for reg's scheme. A ping that failed is not kept. gen is the host's generation
// the answer belongs to.
//
// Lookups that find no answer at the same time share one ping (singleflight per host,
// schemes and generation: the answer carries no credentials, so it is the same for every
// identity). Without that, 100 first look-ups on a new registry sent 29–35 pings. The
// shared ping runs on a context of its own, bounded by the request timeout, that no
// caller leaving cancels; each caller waits only as long as its own ctx. A caller that
// joined a ping which then ran out of its own time, while the caller still has time, pings
// again (joining whichever ping is then in flight) rather than fail early with another
// lookup's timeout. Other failures (refused, reset, 5xx) are the registry's answer at
// that moment and are shared. The ping's requests count against the Budget of the lookup
// that started it.
func (c *Cache) ping(ctx context.Context, reg name.Registry) (*pingAnswer, uint64, error) {
	hs := c.host(reg.RegistryStr())
	schemes := schemeKey(reg)
	for {
		a, gen := hs.pingAnswer(schemes)
		if a != nil {
			return a, gen, nil
		}
		flight := strings.Join([]string{"ping", schemes, reg.RegistryStr(), strconv.FormatUint(gen, 10)}, "\x00")
		ch := c.group.DoChan(flight, func() (any, error) {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.requestTimeout)
			defer cancel()
			rec := &pingRecorder{inner: newPlainHTTPGuard(c.transport, reg), host: reg.RegistryStr()}
			pr, err := transport.Ping(pctx, pingRegistry(reg), transport.NewUserAgent(rec, c.o.userAgent))
			if err != nil {
				if pctx.Err() != nil {
					deadline, _ := pctx.Deadline()
					return nil, &pingTimeout{err: err, deadline: deadline}
				}
				return nil, err
			}
			return hs.setPingAnswer(schemes, rec.answer(pr), gen), nil
		})
		select {
		case r := <-ch:
			if r.Err == nil {
				return r.Val.(*pingAnswer), gen, nil
			}
			var pt *pingTimeout
			if errors.As(r.Err, &pt) && ctx.Err() == nil && outlives(ctx, pt.deadline) {
				continue
			}
			return nil, 0, r.Err
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("waiting for the ping of %s: %w", reg.RegistryStr(), context.Cause(ctx))
		}
	}
}

// pingTimeout is a shared ping that ran out of its own time, at deadline.
type pingTimeout struct {
	err      error
	deadline time.Time
}

// outlives reports whether ctx had more time than a shared ping whose time ran out at
// deadline. Deciding by the deadlines, not by ctx.Err() alone, keeps a caller whose own
// deadline had just passed (its timer not yet fired on a loaded machine) from pinging again.
func outlives(ctx context.Context, deadline time.Time) bool {
	d, ok := ctx.Deadline()
	return !ok || d.After(deadline)
}

func (e *pingTimeout) Error() string { return e.err.Error() }
func (e *pingTimeout) Unwrap() error { return e.err }

// roundTripper returns the transport for lookups in repo with cred: shared by the
// registry's repositories unless the registry hands out Bearer tokens.
func (c *Cache) roundTripper(ctx context.Context, repo name.Repository, cred credential) (http.RoundTripper, error) {
	reg := repo.Registry
	a, gen, err := c.ping(ctx, reg)
	if err != nil {
		return nil, err
	}
	parts := []string{schemeKey(reg), reg.RegistryStr(), cred.id}
	if a.bearer() || !a.replayable {
		parts = append(parts, repo.RepositoryStr())
	}
	key := strings.Join(parts, "\x00")
	if t, ok := c.transports.Get(key); ok && t.gen == gen {
		return t.rt, nil
	}
	v, err, _ := c.group.Do("transport\x00"+key, func() (any, error) {
		var inner http.RoundTripper = newPlainHTTPGuard(c.transport, reg)
		if a.replayable {
			inner = &pingReplay{inner: inner, answer: a}
		}
		// Wrapped here, under the auth transport, because remote adds nothing to a
		// *transport.Wrapper, and NewWithContext keeps a User-Agent transport it is given.
		inner = transport.NewUserAgent(inner, c.o.userAgent)
		rt, err := transport.NewWithContext(ctx, pingRegistry(reg), cred.authenticator(), inner, []string{repo.Scope(transport.PullScope)})
		if err != nil {
			return nil, err
		}
		c.transports.Add(key, cachedTransport{rt: rt, gen: gen})
		return rt, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(http.RoundTripper), nil
}
