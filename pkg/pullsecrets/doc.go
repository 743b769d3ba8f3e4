// Package pullsecrets answers "which credentials would the kubelet use to pull this pod's
// images?" It follows the kubelet: the pod's imagePullSecrets, or the ServiceAccount's when
// the pod lists none (what the ServiceAccount admission plugin copies into the pod), of type
// kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg. Docker config matching is
// go-containerregistry's pkg/authn/kubernetes; this package adds what a pod's author needs to
// be told: which listed secrets are missing, of the wrong type, or unparseable, and which
// secret a credential came from.
//
// It reads secrets and service accounts through a client.Reader, which in the webhook is the
// manager's informer-backed cache, so an admission costs no API server round trip.
package pullsecrets
