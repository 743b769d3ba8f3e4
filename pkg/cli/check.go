package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pullgate/pullgate/pkg/manifest"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/validate"
	"github.com/pullgate/pullgate/pkg/webhook"
	"github.com/pullgate/pullgate/pkg/workload"
)

type checkOptions struct {
	*options
	files       []string
	recursive   bool
	platforms   []string
	fromCluster bool
	output      string
	keychain    authn.Keychain
}

func newCheckCommand(o *options) *cobra.Command {
	co := &checkOptions{options: o, keychain: authn.DefaultKeychain}
	cmd := &cobra.Command{
		Use:   "check -f FILENAME",
		Short: "Check manifests before they are applied: would pullgate admit them, would their images pull",
		Long: `check reads manifests as kubectl apply -f does (files, directories with -R, - for
standard input; multi-document YAML, JSON, Lists) and checks every image of every workload
(Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob)
as pullgate's webhook would at admission. Credentials come from the Secrets in the manifests
(listed by the pods' imagePullSecrets or their ServiceAccounts', as the kubelet uses them)
and from the local docker config (DOCKER_CONFIG, credential helpers). Platforms come from
--platform or from the nodes of the current context (--from-cluster).

Exit status: 0 when nothing would be denied, 1 when something would, 2 on bad usage or input.`,
		Example: `  kubectl pullgate check -f deploy/ -R --platform linux/amd64,linux/arm64
  helm template my-release ./chart | kubectl pullgate check -f - -o github
  kustomize build overlays/prod | kubectl pullgate check -f - --from-cluster`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return co.run(cmd.Context(), cmd.InOrStdin()) },
	}
	cmd.Flags().StringSliceVarP(&co.files, "filename", "f", nil, "file, directory or - (standard input) holding the manifests; repeatable")
	cmd.Flags().BoolVarP(&co.recursive, "recursive", "R", false, "read the directories given with -f recursively")
	cmd.Flags().StringSliceVar(&co.platforms, "platform", nil, "OS/ARCH of the nodes the pods run on, comma-separated (linux/amd64,linux/arm64); default: no platform check, or the cluster's with --from-cluster")
	cmd.Flags().BoolVar(&co.fromCluster, "from-cluster", false, "read the nodes, the policy ConfigMap, and Secrets and ServiceAccounts the manifests lack from the current context")
	cmd.Flags().StringVarP(&co.output, "output", "o", "text", "output format: text (what kubectl apply would print), json, or github (GitHub Actions annotations)")
	return cmd
}

// Result is the verdict on one object of the manifests, as -o json prints it.
type Result struct {
	File      string    `json:"file"`
	Document  int       `json:"document"`
	Line      int       `json:"line"`
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Allowed   bool      `json:"allowed"`
	Denial    string    `json:"denial,omitempty"`
	Warnings  []string  `json:"warnings,omitempty"`
	Findings  []Finding `json:"findings"`

	key string
}

// Finding is a validate.Finding in JSON.
type Finding struct {
	Reason    validate.Reason   `json:"reason"`
	Severity  validate.Severity `json:"severity"`
	Container string            `json:"container,omitempty"`
	Volume    string            `json:"volume,omitempty"`
	Image     string            `json:"image,omitempty"`
	Message   string            `json:"message"`
	Fix       string            `json:"fix"`
}

func (co *checkOptions) run(ctx context.Context, stdin io.Reader) error {
	if len(co.files) == 0 {
		return usage("must give manifests with -f FILENAME (a file, a directory or -)")
	}
	switch co.output {
	case "text", "json", "github":
	default:
		return usage("--output %q: want text, json or github", co.output)
	}
	if co.fromCluster && len(co.platforms) > 0 {
		return usage("--platform and --from-cluster are mutually exclusive")
	}
	snapshot, err := platformNodes(co.platforms)
	if err != nil {
		return err
	}
	defaultNS, err := co.namespace()
	if err != nil {
		return err
	}

	files, err := manifest.Files(co.files, co.recursive)
	if err != nil {
		return &exitError{code: ExitError, err: err}
	}
	var objs []manifest.Object
	for i, f := range files {
		co.progressf("reading %d/%d: %s", i+1, len(files), f)
		os, err := manifest.ReadFile(f, stdin)
		if err != nil {
			co.progressDone()
			return &exitError{code: ExitError, err: err}
		}
		objs = append(objs, os...)
	}
	co.progressDone()

	var c *cluster
	if co.fromCluster {
		if c, err = co.cluster(); err != nil {
			return err
		}
		var skipped string
		if snapshot, skipped, err = co.clusterNodes(ctx, c); err != nil {
			return err
		}
		if skipped != "" {
			fmt.Fprintf(co.streams.ErrOut, "note: no platform check: %s\n", skipped)
		}
	}
	pol, err := co.loadPolicy(ctx, c)
	if err != nil {
		return err
	}
	checker := &validate.Checker{Registry: co.registries(pol), Nodes: func() *validate.Nodes { return snapshot }}
	results, err := co.check(ctx, checker, pol, objs, defaultNS, c)
	if err != nil {
		return err
	}
	if err := co.print(results); err != nil {
		return err
	}
	for _, r := range results {
		if !r.Allowed {
			return denied
		}
	}
	return nil
}

// check runs the webhook's checks on every workload of objs.
func (co *checkOptions) check(ctx context.Context, checker *validate.Checker, pol *policy.Policy, objs []manifest.Object, defaultNS string, c *cluster) ([]Result, error) {
	reader := &manifestReader{objects: map[objectKey]client.Object{}}
	if c != nil {
		reader.fallback = c
	}
	nsOf := func(o client.Object) string {
		if ns := o.GetNamespace(); ns != "" {
			return ns
		}
		return defaultNS
	}
	for _, m := range objs {
		switch o := m.Object.(type) {
		case *corev1.Secret, *corev1.ServiceAccount:
			reader.objects[objectKey{gvk(o), nsOf(o), o.GetName()}] = o
		case *corev1.Namespace:
			reader.objects[objectKey{gvk(o), "", o.GetName()}] = o
		}
	}
	var results []Result
	n := 0
	for _, m := range objs {
		w, ok := workload.Of(m.Object)
		if !ok {
			continue
		}
		n++
		co.progressf("checking %s (%d)", w.Key(), n)
		w.Namespace = nsOf(m.Object)
		if pol.NamespaceExempt(w.Namespace) {
			results = append(results, Result{File: m.File, Document: m.Document, Line: m.Line, Kind: w.GVK.Kind,
				Namespace: w.Namespace, Name: w.Name, Allowed: true, Findings: []Finding{}, key: w.Key()})
			continue
		}
		var nsLabels map[string]string
		var ns corev1.Namespace
		if err := reader.Get(ctx, types.NamespacedName{Name: w.Namespace}, &ns); err == nil {
			nsLabels = ns.Labels
		}
		reader.forbidden = false
		keyring, err := pullsecrets.ForPod(ctx, reader, w.Namespace, w.Spec)
		if err != nil {
			co.progressDone()
			if c != nil {
				return nil, co.clusterError(c.host, err)
			}
			return nil, err
		}
		if local := co.localSecret(w.Spec); local != nil {
			keyring = pullsecrets.Join(keyring, pullsecrets.FromSecrets([]corev1.Secret{*local}))
		}
		lctx, cancel := context.WithTimeout(ctx, 2*pol.LookupTimeout.Duration)
		findings := checker.Check(lctx, pol, w.Pod(nsLabels, keyring))
		cancel()
		if reader.forbidden {
			fmt.Fprintf(co.streams.ErrOut, "note: %s: your credentials may not read its pull secrets or ServiceAccount in the cluster; its pull-secret check was skipped\n", w.Key())
			findings = slices.DeleteFunc(findings, func(f validate.Finding) bool { return isCredentialReason(f.Reason) })
		}
		denial, warnings := webhook.Verdict(w.GVK.Kind, findings)
		r := Result{File: m.File, Document: m.Document, Line: m.Line, Kind: w.GVK.Kind, Namespace: w.Namespace, Name: w.Name,
			Allowed: denial == "", Denial: denial, Warnings: warnings, Findings: []Finding{}, key: w.Key()}
		for _, f := range findings {
			r.Findings = append(r.Findings, Finding{Reason: f.Reason, Severity: f.Severity, Container: f.Container, Volume: f.Volume,
				Image: f.Image, Message: f.Message, Fix: f.Fix})
		}
		results = append(results, r)
	}
	co.progressDone()
	return results, nil
}

// localSecretName names the credentials of the local docker config in findings.
const localSecretName = "local docker config"

// localSecret is a docker config secret holding, for each registry the pod's images are on,
// what the local docker config (authn.DefaultKeychain: DOCKER_CONFIG, ~/.docker/config.json,
// credential helpers) gives for it; nil when it gives nothing but anonymous access.
func (co *checkOptions) localSecret(spec *corev1.PodSpec) *corev1.Secret {
	type entry struct {
		Username      string `json:"username,omitempty"`
		Password      string `json:"password,omitempty"`
		Auth          string `json:"auth,omitempty"`
		IdentityToken string `json:"identitytoken,omitempty"`
	}
	auths := map[string]entry{}
	var imgs []string
	for _, c := range spec.InitContainers {
		imgs = append(imgs, c.Image)
	}
	for _, c := range spec.Containers {
		imgs = append(imgs, c.Image)
	}
	for _, c := range spec.EphemeralContainers {
		imgs = append(imgs, c.Image)
	}
	for _, v := range spec.Volumes {
		if v.Image != nil {
			imgs = append(imgs, v.Image.Reference)
		}
	}
	for _, img := range imgs {
		ref, err := name.ParseReference(img)
		if err != nil {
			continue
		}
		key := ref.Context().RegistryStr()
		if _, ok := auths[key]; ok {
			continue
		}
		a, err := co.keychain.Resolve(ref.Context())
		if err != nil || a == authn.Anonymous {
			continue
		}
		cfg, err := a.Authorization()
		if err != nil || (cfg.Username == "" && cfg.IdentityToken == "" && cfg.Auth == "") {
			continue
		}
		e := entry{Username: cfg.Username, Password: cfg.Password, IdentityToken: cfg.IdentityToken, Auth: cfg.Auth}
		if e.Auth == "" && e.Username != "" {
			e.Auth = base64.StdEncoding.EncodeToString([]byte(e.Username + ":" + e.Password))
		}
		auths[key] = e
	}
	if len(auths) == 0 {
		return nil
	}
	data, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return nil
	}
	s := &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
	s.Name = localSecretName
	return s
}

func (co *checkOptions) print(results []Result) error {
	w := co.streams.Out
	switch co.output {
	case "json":
		if results == nil {
			results = []Result{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	case "github":
		for _, r := range results {
			for _, f := range r.Findings {
				level := "warning"
				if f.Severity == validate.Deny && !r.Allowed {
					level = "error"
				}
				what := ""
				switch {
				case f.Container != "":
					what = fmt.Sprintf(" container %q", f.Container)
				case f.Volume != "":
					what = fmt.Sprintf(" volume %q", f.Volume)
				}
				fmt.Fprintf(w, "::%s file=%s,line=%d,title=%s::%s%s: %s. Fix: %s\n", level, ghProperty(r.File), r.Line,
					ghProperty("pullgate "+string(f.Reason)), ghData(r.key), ghData(what), ghData(f.Message), ghData(f.Fix))
			}
		}
		return nil
	}
	for _, r := range results {
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "Warning: %s\n", warn)
		}
		if !r.Allowed {
			fmt.Fprintf(w, "Error from server (PullWouldFail): error when creating %q: admission webhook %q denied the request: %s\n",
				r.File, webhook.WebhookName, r.Denial)
			continue
		}
		fmt.Fprintf(w, "%s admitted\n", r.key)
	}
	if len(results) == 0 {
		fmt.Fprintln(w, "no workloads found in the manifests")
	}
	return nil
}

// ghData escapes an annotation's message as GitHub Actions' workflow commands require.
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// ghProperty escapes an annotation's property (file, title).
func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

type objectKey struct {
	gvk             schema.GroupVersionKind
	namespace, name string
}

func gvk(o client.Object) schema.GroupVersionKind {
	switch o.(type) {
	case *corev1.Secret:
		return corev1.SchemeGroupVersion.WithKind("Secret")
	case *corev1.ServiceAccount:
		return corev1.SchemeGroupVersion.WithKind("ServiceAccount")
	case *corev1.Namespace:
		return corev1.SchemeGroupVersion.WithKind("Namespace")
	}
	return o.GetObjectKind().GroupVersionKind()
}

// manifestReader reads the Secrets, ServiceAccounts and Namespaces of the manifests, as
// pkg/pullsecrets reads them from a cluster; what the manifests lack is read from fallback
// (the cluster, with --from-cluster) or is not found.
type manifestReader struct {
	objects  map[objectKey]client.Object
	fallback client.Reader
	// forbidden records that the fallback refused a read since it was last reset.
	forbidden bool
}

var _ client.Reader = (*manifestReader)(nil)

func (r *manifestReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	k := objectKey{gvk(obj), key.Namespace, key.Name}
	src, ok := r.objects[k]
	if !ok {
		if r.fallback != nil {
			err := r.fallback.Get(ctx, key, obj, opts...)
			if apierrors.IsForbidden(err) {
				// What the user may not read is unknown: the credential findings of this
				// workload are then dropped (see check), never turned into a denial.
				r.forbidden = true
				return apierrors.NewNotFound(schema.GroupResource{Resource: strings.ToLower(k.gvk.Kind) + "s"}, key.Name)
			}
			return err
		}
		return apierrors.NewNotFound(schema.GroupResource{Resource: strings.ToLower(k.gvk.Kind) + "s"}, key.Name)
	}
	switch dst := obj.(type) {
	case *corev1.Secret:
		*dst = *src.(*corev1.Secret).DeepCopy()
	case *corev1.ServiceAccount:
		*dst = *src.(*corev1.ServiceAccount).DeepCopy()
	case *corev1.Namespace:
		*dst = *src.(*corev1.Namespace).DeepCopy()
	default:
		return errors.New("manifestReader reads only Secrets, ServiceAccounts and Namespaces")
	}
	return nil
}

func (r *manifestReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("manifestReader does not list")
}

func isCredentialReason(r validate.Reason) bool {
	switch r {
	case validate.PullSecretMissing, validate.PullSecretInvalid, validate.NoCredentials, validate.CredentialsRejected:
		return true
	}
	return false
}
