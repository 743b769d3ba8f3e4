package validate

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/registryhosts"
)

// RegistryHosts is the nodes' containerd registry configuration (pkg/registryhosts).
type RegistryHosts interface {
	// Endpoints returns the hosts a pull from host tries, in order, for a request needing
	// caps; the last one is the origin (Endpoint.Origin) when the request may go there.
	Endpoints(host string, caps registryhosts.Capabilities) ([]registryhosts.Endpoint, error)
}

var _ RegistryHosts = registryhosts.Config{}

// MirrorsError is a look-up that the nodes' mirrors could not answer and the origin either
// was not to be asked (hosts.toml's server names another registry) or answered with a
// verdict while some mirror failed: the node might pull from that mirror, so it is never a
// verdict.
type MirrorsError struct {
	// Mirror is the first mirror's failure, or why it could not be asked.
	Mirror error
	// Lookup is the origin's answer, nil when it was not asked.
	Lookup error
}

func (e *MirrorsError) Error() string {
	if e.Lookup == nil {
		return fmt.Sprintf("the nodes' registry mirrors failed (%v) and the registry is not asked after them", e.Mirror)
	}
	return fmt.Sprintf("a node registry mirror failed (%v); the registry says: %v", e.Mirror, e.Lookup)
}

// resolveThroughMirrors resolves ref as containerd does with the nodes' hosts.toml: each
// configured host that may answer the request (and a server that is not the image's
// registry), in order, on any failure or "not found" the next (core/remotes/docker/resolver.go, Resolve: "for i, host := range hosts { ... continue
// // try another host }"), then the origin with the pod's credentials (origin). A mirror is
// asked without credentials: the pod's are for the image's registry, and pullgate never sends
// a credential to a host its entry does not name. It returns the reference that answered,
// which the platform check then reads from.
func (r *run) resolveThroughMirrors(ctx context.Context, ref name.Reference,
	origin func() (lookup.Descriptor, authn.Authenticator, error)) (lookup.Descriptor, authn.Authenticator, name.Reference, error) {
	caps := registryhosts.CapPull
	if _, ok := ref.(name.Tag); ok {
		caps |= registryhosts.CapResolve
	}
	eps, err := r.checker.RegistryHosts.Endpoints(registryHost(ref.Context()), caps)
	if err != nil {
		// containerd logs a hosts.toml it cannot parse and pulls from the registry itself.
		desc, auth, err := origin()
		return desc, auth, ref, err
	}
	var mirrorErr error
	for _, ep := range eps {
		if ep.Origin && sameRegistry(ep.Host, ref.Context().RegistryStr()) {
			break
		}
		mref, err := onHost(ref, ep)
		if err == nil {
			var desc lookup.Descriptor
			desc, err = r.checker.Registry.Resolve(ctx, mref, authn.Anonymous)
			if err == nil {
				return desc, authn.Anonymous, mref, nil
			}
			if lookup.CacheOnly(ctx) && needsRegistry(err) {
				return lookup.Descriptor{}, authn.Anonymous, ref, err
			}
			// A mirror without the image: containerd goes on to the next host. A mirror
			// refusing pullgate's anonymous look-up (401/403) is one it could not ask: the
			// node may hold credentials for it in its own containerd config, so the origin's
			// "not found" must not deny on its own.
			if k := lookup.KindOf(err); k == lookup.KindRepositoryUnknown || k == lookup.KindManifestUnknown {
				continue
			}
		}
		if mirrorErr == nil {
			mirrorErr = fmt.Errorf("mirror %s: %w", ep.Host, err)
		}
	}
	last := len(eps) - 1
	if last < 0 || !eps[last].Origin || !sameRegistry(eps[last].Host, ref.Context().RegistryStr()) {
		if mirrorErr == nil {
			mirrorErr = errors.New("no mirror has the image")
		}
		return lookup.Descriptor{}, authn.Anonymous, ref, &MirrorsError{Mirror: mirrorErr}
	}
	desc, auth, err := origin()
	if err != nil && mirrorErr != nil && !(lookup.CacheOnly(ctx) && needsRegistry(err)) {
		return desc, auth, ref, &MirrorsError{Mirror: mirrorErr, Lookup: err}
	}
	return desc, auth, ref, err
}

// sameRegistry reports whether an endpoint host is the image's registry.
func sameRegistry(endpoint, registry string) bool {
	if registry == name.DefaultRegistry || registry == "docker.io" {
		return endpoint == "registry-1.docker.io" || endpoint == "index.docker.io" || endpoint == "docker.io"
	}
	return endpoint == registry
}

// onHost is ref's repository, tag or digest on an endpoint's host.
func onHost(ref name.Reference, ep registryhosts.Endpoint) (name.Reference, error) {
	if why := ep.Unsupported(); why != "" {
		return nil, errors.New(why)
	}
	if ep.SkipVerify {
		return nil, errors.New("skip_verify is set and pullgate always verifies TLS")
	}
	var opts []name.Option
	if ep.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(ep.Host+"/"+ref.Context().RepositoryStr(), opts...)
	if err != nil {
		return nil, err
	}
	switch ref := ref.(type) {
	case name.Digest:
		return repo.Digest(ref.DigestStr()), nil
	case name.Tag:
		return repo.Tag(ref.TagStr()), nil
	}
	return nil, fmt.Errorf("reference %s is neither a tag nor a digest", ref)
}
