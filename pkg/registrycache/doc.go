// Package registrycache is the only code in pullgate that talks to container registries.
//
// Every admission asks the same few questions about the images of a pod: does this tag or
// digest exist (and what digest does the tag name today), which platforms does the manifest
// at a digest provide, and which tags does a repository have (to suggest one when a tag is
// missing). A busy cluster asks them hundreds of times a second, mostly about the same
// images, under a webhook deadline of a few seconds. Cache answers them with
// go-containerregistry's remote package underneath and adds what an admission webhook
// needs on top:
//
//   - caching by what the answer depends on: registry, repository, reference and the
//     identity of the credentials used (a keyed hash, never the secret), so an answer
//     obtained with one namespace's pull secret is never served to a request without it;
//   - what a digest contains (platforms, an image's config) never changes and is kept
//     without expiry in a bounded LRU; what a tag names, and whether a digest still exists,
//     for the tag TTL; "not found" for at most a burst window of 2s, so that a denial never
//     rests on an older one; failures not at all. Under lookup.WithFresh (the mutations)
//     an answer older than the burst window is asked again;
//   - few round trips for a first-seen image: a registry is pinged once, not once per
//     repository (concurrent first look-ups share that ping), and its transport is shared by its repositories for one credential
//     identity (per repository for Bearer registries, whose tokens are scoped to one);
//     under lookup.WithPlatformsWanted, Resolve GETs the manifest instead of a HEAD and
//     keeps what Platforms needs, so an image costs a manifest and a config request and an
//     index one request;
//   - one in-flight request per question (singleflight) that survives the caller that
//     started it, a per-host concurrency limit, Retry-After honoured on 429, and a per-host
//     circuit breaker so a dead registry costs one timeout per window, not one per pod;
//   - a dial policy that refuses link-local and cloud metadata addresses always, and
//     loopback and private networks unless allowed, checked on the resolved address that is
//     actually dialled (redirects and token servers included);
//   - HTTPS as containerd speaks it (scheme.go): plain HTTP, after HTTPS, only to
//     containerd's localhost hosts and references marked name.Insecure, and no credential
//     over plain HTTP to any other host;
//   - every failure classified into a *lookup.Error whose Kind tells a definite answer
//     (unknown repository or manifest, unauthorized, denied) from a failure to get one
//     (timeout, unreachable, rate limited, server error, blocked); only the endpoint asked
//     gives a "not found" (a token server's 404, or a config blob's, is a failure).
package registrycache
