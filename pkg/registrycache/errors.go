package registrycache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/pullgate/pullgate/pkg/lookup"
)

// endpoint says which registry API a lookup used, since the same status means different
// things on each: a 404 from /manifests/ is an unknown manifest, from /tags/list an unknown
// repository.
type endpoint int

const (
	endpointManifests endpoint = iota
	endpointTags
)

// classify turns an error from go-containerregistry (or the transport under it) into a
// *lookup.Error for host. Only a registry's answer becomes a verdict; anything that is not
// understood is a failure (KindServerError), never "not found".
func classify(host string, ep endpoint, err error) *lookup.Error {
	var le *lookup.Error
	if errors.As(err, &le) {
		return le
	}
	e := &lookup.Error{Host: host, Err: err}
	var (
		be *blockedError
		te *transport.Error
	)
	switch {
	case errors.As(err, &be) || strings.Contains(err.Error(), "SSRF protection"):
		// The second is go-containerregistry's own redirect guard (an unexported error).
		e.Kind = lookup.KindBlocked
	case errors.As(err, &te):
		e.StatusCode = te.StatusCode
		e.Kind = kindOfResponse(te, ep)
	case isTimeout(err):
		e.Kind = lookup.KindTimeout
	case isNetwork(err):
		e.Kind = lookup.KindUnreachable
	default:
		e.Kind = lookup.KindServerError
	}
	return e
}

// kindOfResponse classifies a registry's error response: by its error code when it sent
// one (HEAD responses have no body), else by status.
func kindOfResponse(te *transport.Error, ep endpoint) lookup.Kind {
	for _, d := range te.Errors {
		switch d.Code {
		case transport.NameUnknownErrorCode:
			return lookup.KindRepositoryUnknown
		case transport.ManifestUnknownErrorCode:
			if ep == endpointTags {
				return lookup.KindRepositoryUnknown
			}
			return lookup.KindManifestUnknown
		case transport.UnauthorizedErrorCode:
			return lookup.KindUnauthorized
		case transport.DeniedErrorCode:
			return lookup.KindDenied
		case transport.TooManyRequestsErrorCode:
			return lookup.KindRateLimited
		}
	}
	switch code := te.StatusCode; {
	case code == http.StatusNotFound:
		if te.Request != nil && te.Request.URL != nil && te.Request.URL.Path == "/v2/" {
			// The API root itself is missing: whatever answers is not a registry we
			// understand, which says nothing definite about the image.
			return lookup.KindServerError
		}
		if ep == endpointTags {
			return lookup.KindRepositoryUnknown
		}
		return lookup.KindManifestUnknown
	case code == http.StatusUnauthorized:
		return lookup.KindUnauthorized
	case code == http.StatusForbidden:
		return lookup.KindDenied
	case code == http.StatusTooManyRequests:
		return lookup.KindRateLimited
	default:
		// 5xx, and any other status that is not a registry answer.
		return lookup.KindServerError
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isNetwork reports whether err is a failure to exchange a request and response at all:
// DNS, dial, connection reset or closed, TLS, proxy, too many redirects.
func isNetwork(err error) bool {
	var (
		urlErr   *url.Error
		opErr    *net.OpError
		dnsErr   *net.DNSError
		addrErr  *net.AddrError
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
		certErr  *tls.CertificateVerificationError
		authErr  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invErr   x509.CertificateInvalidError
	)
	return errors.As(err, &urlErr) || errors.As(err, &opErr) || errors.As(err, &dnsErr) ||
		errors.As(err, &addrErr) || errors.As(err, &recErr) || errors.As(err, &alertErr) ||
		errors.As(err, &certErr) || errors.As(err, &authErr) || errors.As(err, &hostErr) ||
		errors.As(err, &invErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}
