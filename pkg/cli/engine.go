package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pullgate/pullgate/pkg/nodes"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

// cluster is a client of the current context's API server, reading with the user's own
// credentials (no cache: every read is what the user's RBAC allows now).
type cluster struct {
	client.Client
	host string
}

func (o *options) cluster() (*cluster, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, usage("loading kubeconfig: %v", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "kubectl-pullgate/" + o.version
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, o.clusterError(cfg.Host, err)
	}
	return &cluster{Client: c, host: cfg.Host}, nil
}

// namespace is the -n flag, else the context's namespace, else "default".
func (o *options) namespace() (string, error) {
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", usage("reading the namespace of the current context: %v", err)
	}
	return ns, nil
}

// clusterError turns a failure to talk to the API server into a clear error (exit 2).
func (o *options) clusterError(host string, err error) error {
	var uerr *url.Error
	var nerr net.Error
	if errors.As(err, &uerr) || errors.As(err, &nerr) {
		ctx := ""
		if o.flags.Context != nil && *o.flags.Context != "" {
			ctx = fmt.Sprintf(" (context %q)", *o.flags.Context)
		}
		return &exitError{code: ExitError, err: fmt.Errorf("cannot reach the cluster at %s%s: %v", host, ctx, err)}
	}
	return &exitError{code: ExitError, err: err}
}

// loadPolicy reads --policy, else (when c is not nil) the cluster's policy ConfigMap, else
// gives the default policy. Where it came from is said on stderr when it is not the file.
func (o *options) loadPolicy(ctx context.Context, c *cluster) (*policy.Policy, error) {
	if o.policyFile != "" {
		p, err := policy.LoadFile(o.policyFile)
		if err != nil {
			return nil, usage("loading --policy: %v", err)
		}
		return p, nil
	}
	if c == nil {
		return policy.Default(), nil
	}
	ns, n, ok := strings.Cut(o.policyConfigMap, "/")
	if !ok || ns == "" || n == "" {
		return nil, usage("--policy-configmap %q is not NAMESPACE/NAME", o.policyConfigMap)
	}
	var cm corev1.ConfigMap
	err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: n}, &cm)
	switch {
	case err == nil:
		p, err := policy.Parse([]byte(cm.Data[policy.DataKey]))
		if err != nil {
			return nil, fmt.Errorf("parsing the policy in ConfigMap %s: %w", o.policyConfigMap, err)
		}
		return p, nil
	case apierrors.IsNotFound(err), apierrors.IsForbidden(err):
		fmt.Fprintf(o.streams.ErrOut, "note: using pullgate's default policy (ConfigMap %s: %s)\n", o.policyConfigMap, shortReason(err))
		return policy.Default(), nil
	}
	return nil, o.clusterError(c.host, err)
}

func shortReason(err error) string {
	switch {
	case apierrors.IsNotFound(err):
		return "not found"
	case apierrors.IsForbidden(err):
		return "forbidden"
	}
	return err.Error()
}

// registries is the registry client, set up from the policy as cmd/webhook sets it up.
func (o *options) registries(pol *policy.Policy) *registrycache.Cache {
	return registrycache.New(
		registrycache.WithTagTTL(pol.Cache.TagTTL.Duration),
		registrycache.WithNegativeTTL(pol.Cache.NegativeTTL.Duration),
		registrycache.WithMaxEntries(pol.Cache.MaxEntries),
		registrycache.WithDialPolicy(registrycache.DialPolicy{
			AllowLoopback: pol.Registries.AllowLoopback, AllowPrivateNetworks: pol.Registries.AllowPrivateNetworks,
		}),
		registrycache.WithRequestTimeout(pol.LookupTimeout.Duration),
		registrycache.WithUserAgent("kubectl-pullgate/"+o.version),
	)
}

// clusterNodes reads the cluster's nodes into a snapshot, or says why it could not.
func (o *options) clusterNodes(ctx context.Context, c *cluster) (*validate.Nodes, string, error) {
	var list corev1.NodeList
	if err := c.List(ctx, &list); err != nil {
		if apierrors.IsForbidden(err) {
			return nil, "your credentials may not list nodes (forbidden), so the platforms are unknown", nil
		}
		return nil, "", o.clusterError(c.host, err)
	}
	t := nodes.NewTracker(nodes.WithDebounce(0))
	for i := range list.Items {
		t.Observe(&list.Items[i])
	}
	return t.Get(), "", nil
}

// platformNodes is a snapshot of one node of each "os/arch" platform, for --platform: the
// platform check then compares images with these platforms, as containerd matches them.
func platformNodes(spec []string) (*validate.Nodes, error) {
	var groups []validate.NodeGroup
	for _, s := range spec {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		os, arch, ok := strings.Cut(s, "/")
		if !ok || os == "" || arch == "" || strings.Contains(arch, "/") {
			return nil, usage("--platform %q is not OS/ARCH (linux/amd64)", s)
		}
		groups = append(groups, validate.NodeGroup{
			Platform: validate.NodePlatform{OS: os, Architecture: arch},
			Runtime:  validate.Runtime{Kind: validate.RuntimeContainerd},
			Members: []validate.NodeMember{{Name: "platform " + s, Labels: map[string]string{
				corev1.LabelOSStable: os, corev1.LabelArchStable: arch, corev1.LabelHostname: "platform-" + os + "-" + arch,
			}}},
		})
	}
	return validate.NewNodes(groups), nil
}
