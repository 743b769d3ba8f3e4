package registrycache

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/pullgate/pullgate/pkg/lookup"
)

// 100 first look-ups of 100 images on a registry never seen, at once, ping it once,
// whichever way it authenticates: the ping's answer belongs to the registry.
func TestConcurrentFirstLookupsShareOnePing(t *testing.T) {
	const images = 100
	for _, tc := range []struct {
		desc string
		auth func(reg *testRegistry) fault
		as   authn.Authenticator
	}{
		{"anonymous registry", func(*testRegistry) fault { return nil }, nil},
		{"Basic registry", func(*testRegistry) fault { return basicAuth("alice", "s3cret-A-pw") }, alice},
		{"Bearer registry", (*testRegistry).bearerAuth, alice},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg := newTestRegistry(t)
			img, err := random.Image(64, 1)
			if err != nil {
				t.Fatal(err)
			}
			for i := range images {
				reg.pushImage(t, fmt.Sprintf("app%d:v1", i), img)
			}
			auth := tc.auth(reg)
			// Every answer takes 100 ms, so all look-ups arrive while the first ping is
			// in flight.
			reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				time.Sleep(100 * time.Millisecond)
				return auth != nil && auth(w, r)
			})
			reg.resetLog()
			c := newTestCache(t)
			next := make(chan int, images)
			for i := range images {
				next <- i
			}
			concurrently(t, images, func() error {
				_, err := c.Resolve(t.Context(), reg.ref(t, fmt.Sprintf("app%d:v1", <-next)), tc.as)
				return err
			})
			if n := reg.roundTrips().Pings; n != 1 {
				t.Errorf("registry saw %d pings for %d concurrent first look-ups, want 1", n, images)
			}
		})
	}
}

// A ping that fails is shared by the look-ups waiting for it, and not kept: the next
// look-up pings again.
func TestSharedPingFailure(t *testing.T) {
	const images = 20
	reg := newTestRegistry(t)
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	var d v1.Hash
	for i := range images {
		d = reg.pushImage(t, fmt.Sprintf("app%d:v1", i), img)
	}
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		time.Sleep(100 * time.Millisecond)
		return respond(func(r *http.Request) bool { return r.URL.Path == "/v2/" }, http.StatusServiceUnavailable, nil, "")(w, r)
	})
	reg.resetLog()
	c := newTestCache(t, WithBreaker(0, 0))
	next := make(chan int, images)
	for i := range images {
		next <- i
	}
	concurrently(t, images, func() error {
		_, err := c.Resolve(t.Context(), reg.ref(t, fmt.Sprintf("app%d:v1", <-next)), nil)
		if k := lookup.KindOf(err); k != lookup.KindServerError {
			return fmt.Errorf("Resolve() error = %v (%v), want a server error", err, k)
		}
		return nil
	})
	if n := reg.roundTrips().Pings; n != 1 {
		t.Errorf("registry saw %d pings for %d concurrent first look-ups, want 1", n, images)
	}
	reg.setFault(nil)
	resolveWant(t, c, reg.ref(t, "app0:v1"), d)
	if n := reg.roundTrips().Pings; n != 2 {
		t.Errorf("registry saw %d pings in all, want 2: the failed one is not kept", n)
	}
}

// A look-up that joined a ping which ran out of time while the look-up still has time
// does not fail with the other's timeout: it pings again and gets its answer.
func TestJoinerOutlivesSharedPingTimeout(t *testing.T) {
	reg := newTestRegistry(t)
	reg.pushImage(t, "app:v1", nil)
	d := reg.pushImage(t, "app:v2", nil)
	pinged := make(chan struct{}, 1)
	first := make(chan struct{})
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/" {
			return false
		}
		select {
		case pinged <- struct{}{}:
			// The first ping hangs until its client gives up.
			close(first)
			<-r.Context().Done()
			return true
		default:
			return false
		}
	})
	c := newTestCache(t, WithRequestTimeout(2*time.Second), WithBreaker(0, 0))
	errs := make(chan error, 1)
	go func() {
		_, err := c.Resolve(t.Context(), reg.ref(t, "app:v1"), nil)
		errs <- err
	}()
	<-first
	// This look-up (of another image: it must not join the first look-up itself) starts
	// halfway through the first ping, so it joins that ping and has a second left when
	// the ping gives up.
	time.Sleep(time.Second)
	resolveWant(t, c, reg.ref(t, "app:v2"), d)
	if err := <-errs; lookup.KindOf(err) != lookup.KindTimeout {
		t.Errorf("first Resolve() error = %v, want a timeout", err)
	}
	if n := reg.roundTrips().Pings; n != 2 {
		t.Errorf("registry saw %d pings, want 2", n)
	}
}
