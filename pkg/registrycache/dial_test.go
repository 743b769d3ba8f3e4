package registrycache

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pullgate/pullgate/pkg/lookup"
)

func TestDialPolicyForbids(t *testing.T) {
	none := DialPolicy{}
	both := DialPolicy{AllowLoopback: true, AllowPrivateNetworks: true}
	for _, tc := range []struct {
		addr       string
		none, both bool // forbidden under DialPolicy{} / with both allows
	}{
		{"8.8.8.8", false, false},
		{"2001:4860:4860::8888", false, false},
		{"127.0.0.1", true, false},
		{"127.9.9.9", true, false},
		{"::1", true, false},
		{"::ffff:127.0.0.1", true, false},
		{"10.1.2.3", true, false},
		{"172.16.0.1", true, false},
		{"192.168.1.1", true, false},
		{"100.64.0.1", true, false},
		{"fd12:3456::1", true, false},
		{"169.254.169.254", true, true},
		{"::ffff:169.254.169.254", true, true},
		{"64:ff9b::a9fe:a9fe", true, true}, // 169.254.169.254 through NAT64
		{"fd00:ec2::254", true, true},
		{"100.100.100.200", true, true},
		{"169.254.1.1", true, true},
		{"fe80::1", true, true},
		{"fe80::1%eth0", true, true},
		{"0.0.0.0", true, true},
		{"0.1.2.3", true, true},
		{"::", true, true},
		{"224.0.0.1", true, true},
		{"ff02::1", true, true},
		{"255.255.255.255", true, true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.addr)
			if got := none.forbids(ip) != ""; got != tc.none {
				t.Errorf("DialPolicy{}.forbids(%s) = %q, want forbidden=%v", tc.addr, none.forbids(ip), tc.none)
			}
			if got := both.forbids(ip) != ""; got != tc.both {
				t.Errorf("both allowed: forbids(%s) = %q, want forbidden=%v", tc.addr, both.forbids(ip), tc.both)
			}
		})
	}
}

// Blocked addresses are refused before anything is dialled: the registry sees nothing.
func TestDialPolicyBlocks(t *testing.T) {
	reg := newTestRegistry(t)
	reg.pushImage(t, "app:v1", nil)
	_, port, err := net.SplitHostPort(reg.host)
	if err != nil {
		t.Fatal(err)
	}
	resolver := withResolver(map[string][]netip.Addr{
		"mixed.test":    {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("169.254.169.254")},
		"metadata.test": {netip.MustParseAddr("169.254.169.254")},
	})
	for _, tc := range []struct {
		desc   string
		ref    string
		policy DialPolicy
	}{
		{"loopback IP without AllowLoopback", reg.host + "/app:v1", DialPolicy{}},
		{"host name resolving to loopback without AllowLoopback", "localhost:" + port + "/app:v1", DialPolicy{}},
		{"loopback is not a private network", reg.host + "/app:v1", DialPolicy{AllowPrivateNetworks: true}},
		{"metadata address even with both allows", "169.254.169.254/app:v1", DialPolicy{AllowLoopback: true, AllowPrivateNetworks: true}},
		{"name with one allowed and one metadata address", "mixed.test:" + port + "/app:v1", DialPolicy{AllowLoopback: true, AllowPrivateNetworks: true}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg.resetLog()
			ref, err := name.ParseReference(tc.ref, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			c := New(WithDialPolicy(tc.policy), WithRequestTimeout(2*time.Second), resolver)
			_, err = c.Resolve(t.Context(), ref, nil)
			want := errSummary{Kind: lookup.KindBlocked, Host: ref.Context().RegistryStr()}
			if diff := cmp.Diff(want, summarize(t, err)); diff != "" {
				t.Errorf("error (-want +got):\n%s\nerror: %v", diff, err)
			}
			if !strings.Contains(err.Error(), "dial policy does not allow") {
				t.Errorf("error %q does not say the dial policy refused it", err)
			}
			if n := reg.total(); n != 0 {
				t.Errorf("registry saw %d requests, want 0", n)
			}
		})
	}

	t.Run("redirect to a blocked address", func(t *testing.T) {
		reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
			if !onManifests(r) {
				return false
			}
			http.Redirect(w, r, "http://metadata.test:"+port+r.URL.Path, http.StatusTemporaryRedirect)
			return true
		})
		defer reg.setFault(nil)
		c := New(WithDialPolicy(DialPolicy{AllowLoopback: true}), WithRequestTimeout(2*time.Second), resolver)
		_, err := c.Resolve(t.Context(), reg.ref(t, "app:v1"), nil)
		if k := lookup.KindOf(err); k != lookup.KindBlocked {
			t.Errorf("error = %v (kind %v), want blocked", err, k)
		}
	})
}

// The guard dials the address it checked, not whatever a second DNS answer says: a name
// only the guard's resolver knows is reached at the address it returned.
func TestDialPolicyDialsCheckedAddress(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	_, port, err := net.SplitHostPort(reg.host)
	if err != nil {
		t.Fatal(err)
	}
	c := New(WithDialPolicy(DialPolicy{AllowLoopback: true}), withResolver(map[string][]netip.Addr{
		"registry.test": {netip.MustParseAddr("127.0.0.1")},
	}))
	ref, err := name.ParseReference("registry.test:"+port+"/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Resolve(t.Context(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != d {
		t.Errorf("Resolve() = %s, want %s", got.Digest, d)
	}
}

// Through an HTTP proxy the proxy is dialled (it is the operator's), and the registry host
// is checked before the request is handed to it.
func TestDialPolicyThroughProxy(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	var proxied atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		if r.Method == http.MethodConnect {
			http.Error(w, "no CONNECT here", http.StatusMethodNotAllowed)
			return
		}
		reg.reg.ServeHTTP(w, r) // a forward proxy in front of the registry
	}))
	t.Cleanup(proxy.Close)
	proxyURL, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts := []Option{
		WithDialPolicy(DialPolicy{}), // no loopback: the proxy on 127.0.0.1 is dialled anyway
		WithRequestTimeout(2 * time.Second),
		withProxy(func(*http.Request) (*url.URL, error) { return proxyURL, nil }),
		withResolver(map[string][]netip.Addr{
			"public.test":   {netip.MustParseAddr("93.184.215.14")},
			"internal.test": {netip.MustParseAddr("10.0.0.7")},
		}),
	}
	for _, tc := range []struct {
		desc        string
		host        string
		wantKind    lookup.Kind
		wantProxied bool
	}{
		{"public registry goes through the proxy", "public.test", 0, true},
		{"registry that does not resolve locally is left to the proxy", "elsewhere.test", 0, true},
		{"private registry is refused before the proxy", "internal.test", lookup.KindBlocked, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			proxied.Store(0)
			c := New(opts...)
			ref, err := name.ParseReference(tc.host+"/app:v1", name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Resolve(t.Context(), ref, nil)
			if k := lookup.KindOf(err); k != tc.wantKind {
				t.Fatalf("Resolve() error = %v (kind %v), want kind %v", err, k, tc.wantKind)
			}
			if err == nil && got.Digest != d {
				t.Errorf("Resolve() = %s, want %s", got.Digest, d)
			}
			if (proxied.Load() > 0) != tc.wantProxied {
				t.Errorf("proxy saw %d requests, want proxied=%v", proxied.Load(), tc.wantProxied)
			}
		})
	}
}

// A caller-supplied transport is used, with the policy checked before each request.
func TestWithTransport(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	var calls atomic.Int32
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})

	c := New(WithTransport(rt), WithDialPolicy(DialPolicy{AllowLoopback: true}))
	resolveWant(t, c, reg.ref(t, "app:v1"), d)
	if calls.Load() == 0 {
		t.Error("the transport given was not used")
	}

	calls.Store(0)
	c = New(WithTransport(rt), WithDialPolicy(DialPolicy{AllowLoopback: true, AllowPrivateNetworks: true}),
		WithRequestTimeout(time.Second))
	_, err := c.Resolve(t.Context(), name.MustParseReference("169.254.169.254/app:v1"), nil)
	if k := lookup.KindOf(err); k != lookup.KindBlocked {
		t.Errorf("error = %v (kind %v), want blocked", err, k)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("transport saw %d requests to a metadata address, want 0", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
