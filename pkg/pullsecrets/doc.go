// Package pullsecrets answers "which credentials would the kubelet use to pull this pod's
// images, in which order?" It follows the kubelet: the pod's imagePullSecrets, or the
// ServiceAccount's when the pod lists none (what the ServiceAccount admission plugin copies
// into the pod), of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg, merged
// into one keyring and looked up by the kubelet's rules. It also says what a pod's author
// needs to be told: which listed secrets are missing, of the wrong type, unparseable (which
// fails every pull of the pod) or partly unusable, and which secret a credential came from.
//
// The keyring is written by hand, as a port of k8s.io/kubernetes pkg/credentialprovider
// (keyring.go, config.go) and pkg/credentialprovider/secrets (secrets.go): k8s.io/kubernetes
// is not meant to be imported as a library (its staging modules are replaced to v0.x.y and
// its go.mod pins a whole control plane), and the libraries that do something similar
// differ from the kubelet where it matters. go-containerregistry's pkg/authn/kubernetes,
// which this package used before, matches Docker Hub images as index.docker.io/… (the
// kubelet looks them up as docker.io/… and uses an index.docker.io key only when nothing
// matched), returns only the first matching entry, drops a whole secret for one entry whose
// name is not a URL, and reads identity tokens the kubelet ignores. hack/tools/keyringdiff
// is a differential test (table-driven and fuzzed) that gives the same docker configs and
// image names to the kubelet's own keyring and to this one and requires the same
// credentials in the same order.
//
// It reads secrets and service accounts through a client.Reader, which in the webhook is the
// manager's informer-backed cache, so an admission costs no API server round trip; what the
// cache does not have is read again from the API server (WithAPIReader) before it is
// reported missing.
package pullsecrets
