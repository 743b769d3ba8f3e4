package registrycache

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pullgate/pullgate/pkg/lookup"
)

func TestPlainHTTPAllowed(t *testing.T) {
	for _, tc := range []struct {
		host     string
		insecure bool // parsed with name.Insecure (the policy's registries.insecure)
		want     bool
	}{
		// containerd's IsLocalhost: "localhost" and loopback IP literals, any port.
		{host: "localhost", want: true},
		{host: "localhost:5000", want: true},
		{host: "127.0.0.1", want: true},
		{host: "127.0.0.1:5000", want: true},
		{host: "127.0.0.2:5000", want: true},
		{host: "[::1]:5000", want: true},
		// What go-containerregistry would speak plain HTTP to, and containerd would not.
		{host: "app.localhost:5000", want: false},
		{host: "10.1.2.3:5000", want: false},
		{host: "172.16.0.1", want: false},
		{host: "192.168.1.10:5000", want: false},
		{host: "registry.internal:5000", want: false},
		{host: "index.docker.io", want: false},
		// Listed as insecure.
		{host: "10.1.2.3:5000", insecure: true, want: true},
		{host: "registry.internal:5000", insecure: true, want: true},
	} {
		t.Run(fmt.Sprintf("%s insecure=%v", tc.host, tc.insecure), func(t *testing.T) {
			var opts []name.Option
			if tc.insecure {
				opts = append(opts, name.Insecure)
			}
			reg, err := name.NewRegistry(tc.host, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := plainHTTPAllowed(reg); got != tc.want {
				t.Errorf("plainHTTPAllowed(%s) = %v, want %v", tc.host, got, tc.want)
			}
			if got := markedInsecure(reg); got != tc.insecure {
				t.Errorf("markedInsecure(%s) = %v, want %v", tc.host, got, tc.insecure)
			}
			if got := plainHTTPAllowed(pingRegistry(reg)); got != tc.want {
				t.Errorf("pingRegistry(%s) changed whether plain HTTP is allowed to %v", tc.host, got)
			}
		})
	}
}

// A registry that speaks only plain HTTP, reached under names and addresses that are not
// loopback: every connection goes to the test registry, whatever the name, through
// WithTransport. Plain HTTP is spoken only where containerd would speak it, and no
// credential crosses it to a host that is not listed as insecure.
func TestPlainHTTPOnlyWhereContainerdSpeaksIt(t *testing.T) {
	const user, password = "alice", "s3cret-A-pw"
	type want struct {
		found bool
		kind  lookup.Kind // when not found
		// authorized is whether any request carrying an Authorization header reached the
		// registry (over plain HTTP: it speaks nothing else).
		authorized bool
	}
	for _, tc := range []struct {
		desc     string
		host     string // PORT is replaced by the registry's port
		insecure bool
		bearer   string // when set, the registry hands out tokens from this realm (host[:port]/path)
		want     want
	}{
		{desc: "RFC 1918 address not listed insecure: HTTPS only, no credential in clear",
			host: "10.1.2.3:PORT", want: want{kind: lookup.KindUnreachable}},
		{desc: "another RFC 1918 address not listed insecure",
			host: "192.168.1.10:PORT", want: want{kind: lookup.KindUnreachable}},
		{desc: "a *.localhost name is not localhost to containerd",
			host: "app.localhost:PORT", want: want{kind: lookup.KindUnreachable}},
		{desc: "a private name not listed insecure",
			host: "registry.internal:PORT", want: want{kind: lookup.KindUnreachable}},
		{desc: "RFC 1918 address listed insecure: plain HTTP, with the credential",
			host: "10.1.2.3:PORT", insecure: true, want: want{found: true, authorized: true}},
		{desc: "a name listed insecure: plain HTTP, with the credential",
			host: "registry.internal:PORT", insecure: true, want: want{found: true, authorized: true}},
		{desc: "localhost: plain HTTP after HTTPS, as containerd",
			host: "localhost:PORT", want: want{found: true, authorized: true}},
		{desc: "a loopback address other than 127.0.0.1: plain HTTP after HTTPS, as containerd",
			host: "127.0.0.2:PORT", want: want{found: true, authorized: true}},
		{desc: "insecure registry whose token server is another host over plain HTTP: no credential sent to it",
			host: "10.1.2.3:PORT", insecure: true, bearer: "auth.internal:PORT/token",
			want: want{kind: lookup.KindUnreachable}},
		{desc: "insecure registry whose token server is on the registry over plain HTTP",
			host: "10.1.2.3:PORT", insecure: true, bearer: "10.1.2.3:PORT/token",
			want: want{found: true, authorized: true}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg := newTestRegistry(t)
			d := reg.pushImage(t, "app:v1", nil)
			_, port, _ := strings.Cut(reg.host, ":")
			host := strings.ReplaceAll(tc.host, "PORT", port)

			var (
				mu         sync.Mutex
				authorized []string // "METHOD path" of requests with an Authorization header
				requests   int      // every request, all over plain HTTP
			)
			basic := basicAuth(user, password)
			reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				mu.Lock()
				requests++
				if r.Header.Get("Authorization") != "" {
					authorized = append(authorized, r.Method+" "+r.URL.Path)
				}
				mu.Unlock()
				if tc.bearer == "" {
					return basic(w, r)
				}
				realm := "http://" + strings.ReplaceAll(tc.bearer, "PORT", port)
				if r.URL.Path == "/token" {
					if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
						w.WriteHeader(http.StatusUnauthorized)
						return true
					}
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprint(w, `{"token":"t0ken"}`)
					return true
				}
				if r.Header.Get("Authorization") == "Bearer t0ken" {
					return false
				}
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="test"`, realm))
				w.WriteHeader(http.StatusUnauthorized)
				return true
			})

			// Every connection, to any name, reaches the registry's plain-HTTP listener.
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.Proxy = nil
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, reg.srv.Listener.Addr().String())
			}
			c := newTestCache(t, WithTransport(tr), WithBreaker(0, 0),
				WithDialPolicy(DialPolicy{AllowLoopback: true, AllowPrivateNetworks: true}),
				withResolver(map[string][]netip.Addr{
					"app.localhost":     {netip.MustParseAddr("127.0.0.1")},
					"registry.internal": {netip.MustParseAddr("10.9.9.9")},
					"auth.internal":     {netip.MustParseAddr("10.9.9.10")},
				}))

			var opts []name.Option
			if tc.insecure {
				opts = append(opts, name.Insecure)
			}
			ref, err := name.ParseReference(host+"/app:v1", opts...)
			if err != nil {
				t.Fatal(err)
			}
			auth := alice
			got, err := c.Resolve(t.Context(), ref, auth)
			switch {
			case tc.want.found && (err != nil || got.Digest != d):
				t.Errorf("Resolve(%s) = %s, %v; want %s", ref, got.Digest, err, d)
			case !tc.want.found && lookup.KindOf(err) != tc.want.kind:
				t.Errorf("Resolve(%s) error = %v, want kind %v", ref, err, tc.want.kind)
			}
			if err != nil && strings.Contains(err.Error(), password) {
				t.Errorf("the error names the password: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if gotAuth := len(authorized) > 0; gotAuth != tc.want.authorized {
				t.Errorf("requests with an Authorization header over plain HTTP: %q; want some: %v", authorized, tc.want.authorized)
			}
			if !tc.want.found && !tc.insecure && requests != 0 {
				t.Errorf("a registry not to be spoken to over plain HTTP got %d plain-HTTP requests, want 0", requests)
			}
		})
	}
}
