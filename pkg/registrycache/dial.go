package registrycache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// DialPolicy says which addresses the Cache may connect to. Image references come from pod
// specs, so whoever can create a pod chooses the hosts pullgate dials; the policy keeps that
// from reaching what only the cluster should. The zero value allows only public addresses.
//
// Link-local addresses (169.254.0.0/16, fe80::/10), cloud metadata endpoints
// (169.254.169.254, fd00:ec2::254, 100.100.100.200), 0.0.0.0/8, unspecified, broadcast and
// multicast addresses are never dialled, whatever the policy allows.
type DialPolicy struct {
	// AllowLoopback allows 127.0.0.0/8 and ::1.
	AllowLoopback bool
	// AllowPrivateNetworks allows RFC 1918 (10/8, 172.16/12, 192.168/16), 100.64.0.0/10
	// (carrier-grade NAT) and fc00::/7 (unique local) addresses.
	AllowPrivateNetworks bool
}

var (
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
	broadcast   = netip.MustParseAddr("255.255.255.255")
	metadata    = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack, ...
		netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
		netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	}
)

// forbids returns why the policy does not allow dialling ip, or "" when it does.
func (p DialPolicy) forbids(ip netip.Addr) string {
	ip = ip.WithZone("").Unmap()
	if ip.Is6() && nat64.Contains(ip) {
		// A NAT64 gateway would connect to the embedded IPv4 address.
		b := ip.As16()
		if reason := p.forbids(netip.AddrFrom4([4]byte(b[12:]))); reason != "" {
			return reason + " (through NAT64)"
		}
	}
	switch {
	case !ip.IsValid():
		return "an invalid address"
	case slices.Contains(metadata, ip):
		return "a cloud metadata address"
	case ip.IsUnspecified() || (ip.Is4() && thisNetwork.Contains(ip)):
		return "an unspecified address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case ip.IsMulticast() || ip == broadcast:
		return "a multicast or broadcast address"
	case ip.IsLoopback():
		if !p.AllowLoopback {
			return "a loopback address"
		}
	case ip.IsPrivate() || cgnat.Contains(ip):
		if !p.AllowPrivateNetworks {
			return "a private network address"
		}
	}
	return ""
}

// fallbackDialTimeout bounds a connection attempt to one address of several.
const fallbackDialTimeout = 2 * time.Second

// blockedError is a dial the policy refused. It names the address, never a credential.
type blockedError struct {
	host   string
	addr   netip.Addr
	reason string
}

func (e *blockedError) Error() string {
	if e.host == e.addr.String() {
		return fmt.Sprintf("%s is %s, which the dial policy does not allow", e.host, e.reason)
	}
	return fmt.Sprintf("%s resolves to %s, %s, which the dial policy does not allow", e.host, e.addr, e.reason)
}

// dialGuard enforces a DialPolicy where connections are made: it resolves the host once,
// checks every address, and connects to a checked address, so a second DNS answer
// (rebinding) is never used. Redirects and token servers go through the same transport and
// so through the same guard.
type dialGuard struct {
	policy    func() DialPolicy
	lookupIP  func(ctx context.Context, network, host string) ([]netip.Addr, error)
	proxyFrom func(*http.Request) (*url.URL, error)
	dialer    *net.Dialer

	// proxies holds the host:port of proxies that proxy() chose. They come from the
	// operator's environment, not from pod specs, so they are dialled as they are.
	proxies sync.Map
}

func newDialGuard(o *options) *dialGuard {
	return &dialGuard{
		policy:    o.dialPolicy,
		lookupIP:  o.lookupIP,
		proxyFrom: o.proxy,
		dialer:    &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
	}
}

// resolve returns the addresses of host, or a *blockedError when the policy forbids any of
// them: one forbidden answer is enough to refuse, since the dial could pick any.
func (g *dialGuard) resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		ipNetwork := "ip"
		switch network {
		case "tcp4":
			ipNetwork = "ip4"
		case "tcp6":
			ipNetwork = "ip6"
		}
		addrs, err = g.lookupIP(ctx, ipNetwork, host)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	policy := g.policy()
	for i, a := range addrs {
		a = a.WithZone("").Unmap()
		if reason := policy.forbids(a); reason != "" {
			return nil, &blockedError{host: host, addr: a, reason: reason}
		}
		addrs[i] = a
	}
	return addrs, nil
}

// DialContext is the transport's dialer.
func (g *dialGuard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, ok := g.proxies.Load(addr); ok {
		return g.dialer.DialContext(ctx, network, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs, err := g.resolve(ctx, network, host)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for i, a := range addrs {
		// Addresses are in the resolver's preference order; one that does not answer
		// must not use up the whole deadline while others remain.
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if i < len(addrs)-1 {
			dctx, cancel = context.WithTimeout(ctx, fallbackDialTimeout)
		}
		conn, err := g.dialer.DialContext(dctx, network, net.JoinHostPort(a.String(), port))
		cancel()
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// proxy is the transport's Proxy function. Through a proxy the dialled address is the
// proxy's, so the registry host is checked here instead: addresses it resolves to locally
// must be allowed. When it does not resolve locally the proxy is left to resolve it (a
// proxy that is the only way out often is the only resolver too).
func (g *dialGuard) proxy(req *http.Request) (*url.URL, error) {
	u, err := g.proxyFrom(req)
	if err != nil || u == nil {
		return u, err
	}
	if _, err := g.resolve(req.Context(), "tcp", req.URL.Hostname()); err != nil {
		var be *blockedError
		if errors.As(err, &be) {
			return nil, err
		}
	}
	g.proxies.Store(proxyAddr(u), struct{}{})
	return u, nil
}

// proxyAddr is the host:port net/http dials for proxy u.
func proxyAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	switch u.Scheme {
	case "https":
		port = "443"
	case "socks5", "socks5h":
		port = "1080"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// newBaseTransport is remote.DefaultTransport with the guard as dialer and proxy chooser.
func newBaseTransport(g *dialGuard) *http.Transport {
	var t *http.Transport
	if dt, ok := remote.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: 1 * time.Second,
			MaxIdleConnsPerHost:   50,
		}
	}
	t.DialContext = g.DialContext
	t.DialTLSContext = nil // TLS is done by the transport over the guarded connection
	t.Proxy = g.proxy
	return t
}
