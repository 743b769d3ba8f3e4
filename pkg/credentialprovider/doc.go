// Package credentialprovider runs the kubelet's credential provider exec plugins
// (ecr-credential-provider, the GCP and Azure ones, or any other) as the kubelet runs them,
// so that pullgate looks an image up with the credentials the node will pull it with.
//
// It reads the same CredentialProviderConfig file (or directory of files) the kubelet gets
// with --image-credential-provider-config, finds the plugins in the directory given with
// --image-credential-provider-bin-dir, and speaks the credentialprovider.kubelet.k8s.io
// protocol with them: the request on stdin, the response on stdout, args and env from the
// configuration on top of pullgate's own environment (which is how IRSA, GKE and AKS workload
// identity reach a plugin). It follows k8s.io/kubernetes pkg/credentialprovider/plugin
// (plugin.go, config.go, plugins.go) rule for rule where the rule decides what is sent:
// matchImages matched with the kubelet's URLsMatchStr, the configuration validated as
// validateCredentialProviderConfig does, the response's apiVersion checked against the
// configured one, the response cached under its cacheKeyType (Image, Registry, Global) for
// its cacheDuration (defaultCacheDuration when it has none, not at all when it is 0), one
// execution per cache key at a time (singleflight), and with tokenAttributes a service
// account token for the pod's ServiceAccount with the configured audience, the cache key
// including the ServiceAccount's identity and annotations (and the token's hash for
// cacheType Token).
//
// It is written by hand because that code lives in k8s.io/kubernetes, which is not meant to
// be imported as a library (see pkg/pullsecrets); the wire types are the published ones of
// k8s.io/kubelet (pkg/apis/credentialprovider/v1, config/v1).
//
// Where pullgate must differ, it does so on purpose:
//   - Time: the kubelet gives each execution 1 minute; an admission has a few seconds. An
//     execution here ends at the admission's deadline (the context), and never later than
//     the kubelet's minute.
//   - Failure: the kubelet logs a plugin that fails and pulls without its credentials.
//     pullgate cannot know what those credentials would have been, so Credentials returns an
//     error (*Error) and the caller treats the look-up as a registry error (the policy's
//     onRegistryError), never as a verdict.
//   - Tokens: the kubelet binds the token to the pod being started. At admission the pod
//     does not exist yet, so the token is bound to nothing and lives 10 minutes, the
//     TokenRequest minimum. Minting it needs create on serviceaccounts/token (the chart's
//     RBAC when tokenAttributes is used).
//
// No credential, token or plugin output is ever put in an error or a log: a plugin's stderr
// may echo what it was given, so it is dropped.
package credentialprovider
