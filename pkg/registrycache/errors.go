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

// endpoint says which registry API a lookup put its question to, since the same status
// means different things on each: a 404 from /manifests/ is an unknown manifest, from
// /tags/list an unknown repository.
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
		pe *plainHTTPError
		te *transport.Error
	)
	switch {
	case errors.As(err, &be) || strings.Contains(err.Error(), "SSRF protection"):
		// The second is go-containerregistry's own redirect guard (an unexported error).
		e.Kind = lookup.KindBlocked
	case errors.As(err, &pe):
		// The registry did not answer over HTTPS, and plain HTTP is not how the node would
		// ask it either.
		e.Kind = lookup.KindUnreachable
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

// responder is what answered a request, judged by the request: a response speaks only for
// what was asked of whoever sent it.
type responder int

const (
	// responderAPI is the endpoint the lookup put its question to (the manifest, the tag
	// list), reached directly: its 404 is a verdict about the image.
	responderAPI responder = iota
	// responderAuth is the API root (the ping) or the token server: it can refuse the
	// credentials, but it knows nothing of the image, so its 404 is not "not found".
	responderAuth
	// responderContent is a blob (the config of an image, read for its platform) or
	// whatever a redirect led to (storage): its errors are failures, whatever the status.
	// A config blob that cannot be read makes containerd's pull fail too
	// (core/remotes/docker/fetcher.go: "could not fetch content descriptor ... from
	// remote"), but the manifest that names it was found and the credentials accepted:
	// the tag is there, so it is not TagNotFound, and not NoCredentials either.
	responderContent
)

// responderOf tells who answered req, a request of a lookup that asked ep.
func responderOf(req *http.Request, ep endpoint) responder {
	if req == nil || req.URL == nil {
		return responderAuth
	}
	if req.Response != nil {
		// net/http set the redirect response that led to this request.
		return responderContent
	}
	p, ok := strings.CutPrefix(req.URL.Path, "/v2/")
	switch {
	case !ok:
		return responderAuth
	case strings.Contains(p, "/blobs/"):
		return responderContent
	case ep == endpointManifests && strings.Contains(p, "/manifests/"),
		ep == endpointTags && strings.HasSuffix(p, "/tags/list"):
		return responderAPI
	}
	// The API root, or a token server under /v2/ (Quay's realm is /v2/auth).
	return responderAuth
}

// kindOfResponse classifies a registry's error response: by its error code when it sent
// one (HEAD responses have no body), else by status, and only as far as the responder of
// the request can tell (responderOf).
func kindOfResponse(te *transport.Error, ep endpoint) lookup.Kind {
	who := responderOf(te.Request, ep)
	for _, d := range te.Errors {
		switch d.Code {
		case transport.TooManyRequestsErrorCode:
			return lookup.KindRateLimited
		case transport.NameUnknownErrorCode:
			if who == responderAPI {
				return lookup.KindRepositoryUnknown
			}
		case transport.ManifestUnknownErrorCode:
			switch {
			case who != responderAPI:
			case ep == endpointTags:
				return lookup.KindRepositoryUnknown
			default:
				return lookup.KindManifestUnknown
			}
		case transport.UnauthorizedErrorCode:
			if who != responderContent {
				return lookup.KindUnauthorized
			}
		case transport.DeniedErrorCode:
			if who != responderContent {
				return lookup.KindDenied
			}
		}
	}
	switch code := te.StatusCode; {
	case code == http.StatusTooManyRequests:
		return lookup.KindRateLimited
	case who == responderContent:
		return lookup.KindServerError
	case code == http.StatusUnauthorized:
		return lookup.KindUnauthorized
	case code == http.StatusForbidden:
		return lookup.KindDenied
	case code == http.StatusNotFound && who == responderAPI:
		if ep == endpointTags {
			return lookup.KindRepositoryUnknown
		}
		return lookup.KindManifestUnknown
	default:
		// 5xx, a 404 from the API root or a token server, and any other status that is
		// not a registry answer.
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
