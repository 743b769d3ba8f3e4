package registrycache

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// The Cache speaks to a registry over the scheme the node's container runtime would use,
// not the one go-containerregistry guesses. go-containerregistry (pkg/name/registry.go,
// Registry.Scheme) answers "http" for RFC 1918 addresses, *.localhost names, localhost:PORT,
// 127.0.0.1 and ::1, and transport.Ping (pkg/v1/remote/transport/ping.go) then races https
// against http and keeps whichever answers. containerd does not: with no hosts.toml for a
// registry, ConfigureHosts (core/remotes/docker/config/hosts.go, containerd v2.4.2) gives it
//
//	} else if docker.IsLocalhost(host) {
//		...
//		if port == "" || port == "443" {
//			// If port is default or 443, only use https
//			hosts[len(hosts)-1].scheme = "https"
//		} else {
//			// HTTP fallback logic will be used when protocol is ambiguous
//			hosts[len(hosts)-1].scheme = "http"
//		}
//	} else {
//		...
//			hosts[len(hosts)-1].scheme = "https"
//
// and turns the localhost "http" into HTTPS first with docker.NewHTTPFallback (retry over
// http on a TLS error) because it also sets skip_verify for it; containerd 1.6
// (remotes/docker/config/hosts.go, v1.6.20) uses plain "http" for every IsLocalhost host.
// So plain HTTP is used, after HTTPS, only for IsLocalhost hosts (both containerd lines
// would use it on some port of theirs) and for registries the caller marks insecure with
// name.Insecure (the policy's registries.insecure, which the node's hosts.toml must match).
// A private address or any other name gets HTTPS only: a registry there that speaks plain
// HTTP fails on the node, and a credential sent to it in clear text would have been seen by
// the network.

// isLocalhost is containerd's docker.IsLocalhost (core/remotes/docker/resolver.go):
//
//	if h, _, err := net.SplitHostPort(host); err == nil {
//		host = h
//	}
//	if host == "localhost" {
//		return true
//	}
//	ip := net.ParseIP(host)
//	return ip.IsLoopback()
func isLocalhost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	return net.ParseIP(host).IsLoopback()
}

// markedInsecure reports whether reg was made with name.Insecure. go-containerregistry keeps
// the flag unexported; a Registry is a comparable value of the flag and the host, so it is
// the one that NewRegistry(host, name.Insecure) makes.
func markedInsecure(reg name.Registry) bool {
	insecure, err := name.NewRegistry(reg.RegistryStr(), name.Insecure)
	return err == nil && reg == insecure
}

// plainHTTPAllowed reports whether reg may be spoken to over plain HTTP (after HTTPS): it is
// marked insecure, or containerd treats it as localhost.
func plainHTTPAllowed(reg name.Registry) bool {
	return markedInsecure(reg) || isLocalhost(reg.RegistryStr())
}

// schemeKey names the schemes reg may be spoken to over, for keying ping answers and
// transports: answers obtained where plain HTTP was allowed never serve where it is not.
func schemeKey(reg name.Registry) string {
	if plainHTTPAllowed(reg) {
		return "https+http"
	}
	return "https"
}

// pingRegistry is reg as go-containerregistry is to ping it: marked insecure when plain HTTP
// is allowed, so that transport.Ping falls back to http for 127.0.0.2:5000 as for
// 127.0.0.1:5000. Where plain HTTP is not allowed go-containerregistry may still try http
// (RFC 1918 addresses); plainHTTPGuard refuses it.
func pingRegistry(reg name.Registry) name.Registry {
	if !plainHTTPAllowed(reg) || markedInsecure(reg) {
		return reg
	}
	insecure, err := name.NewRegistry(reg.RegistryStr(), name.Insecure)
	if err != nil {
		return reg
	}
	return insecure
}

// plainHTTPGuard sits under go-containerregistry's auth transports for one registry, so it
// sees every request with the headers they added, and refuses to send over plain HTTP what
// containerd would not: any request to the registry unless plain HTTP is allowed for it,
// and any request carrying a credential (Basic or Bearer, to the registry or its token
// server) to a host other than an allowed registry or localhost. Plain-HTTP requests without
// a credential to other hosts (a redirect to storage) go through, as they do on the node.
type plainHTTPGuard struct {
	inner    http.RoundTripper
	registry string // host[:port], as request URLs name it
	plain    bool   // plain HTTP is allowed for the registry
}

func newPlainHTTPGuard(inner http.RoundTripper, reg name.Registry) *plainHTTPGuard {
	return &plainHTTPGuard{inner: inner, registry: reg.RegistryStr(), plain: plainHTTPAllowed(reg)}
}

func (g *plainHTTPGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" {
		host := req.URL.Host
		toRegistry := strings.EqualFold(host, g.registry)
		var refuse *plainHTTPError
		switch {
		case toRegistry && !g.plain:
			refuse = &plainHTTPError{host: host}
		case req.Header.Get("Authorization") != "" && !(toRegistry && g.plain) && !isLocalhost(host):
			refuse = &plainHTTPError{host: host, credential: true}
		}
		if refuse != nil {
			if req.Body != nil {
				_ = req.Body.Close() // a RoundTripper closes the body, even on error
			}
			return nil, refuse
		}
	}
	return g.inner.RoundTrip(req)
}

// plainHTTPError is a request plainHTTPGuard refused. It names the host, never the
// credential.
type plainHTTPError struct {
	host       string
	credential bool
}

func (e *plainHTTPError) Error() string {
	if e.credential {
		return fmt.Sprintf("not sending a credential to %s over plain HTTP: only localhost and registries listed in registries.insecure are spoken to without TLS", e.host)
	}
	return fmt.Sprintf("not speaking plain HTTP to %s: containerd uses HTTPS unless the registry is configured as insecure (registries.insecure)", e.host)
}
