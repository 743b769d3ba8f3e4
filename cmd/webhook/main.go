// Command webhook runs pullgate's admission webhooks: it serves /validate and /mutate over
// TLS, keeps the policy in step with its ConfigMap, and exposes health probes and Prometheus
// metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pullgate/pullgate/pkg/mutate"
	"github.com/pullgate/pullgate/pkg/nodes"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/recheck"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
	pgwebhook "github.com/pullgate/pullgate/pkg/webhook"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// config is the process configuration, from flags.
type config struct {
	// CertDir holds tls.crt and tls.key; they are reloaded when they change.
	CertDir string
	// Port is the webhook's HTTPS port.
	Port int
	// PolicyConfigMap is NAMESPACE/NAME of the ConfigMap holding policy.yaml, watched.
	PolicyConfigMap string
	// PolicyFile is a policy.yaml read once at start; mutually exclusive with PolicyConfigMap.
	PolicyFile string
	// MetricsAddr serves Prometheus metrics; "0" disables.
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz.
	ProbeAddr string
	// PprofAddr serves net/http/pprof; "" or "0" disables.
	PprofAddr string
	// ShutdownDelay is how long the webhook goes on answering after SIGTERM, not ready, before
	// it stops: the API server learns that a terminating pod left its Service's endpoints a
	// moment after the kubelet has told the pod to stop, and calls it meanwhile.
	ShutdownDelay time.Duration
	// CredentialProviderConfig and CredentialProviderBinDir are the kubelet's
	// --image-credential-provider-config and --image-credential-provider-bin-dir: the
	// nodes' credential provider plugins, run as the kubelet runs them (credentialprovider.go).
	CredentialProviderConfig string
	CredentialProviderBinDir string
	// NodeRegistryConfigDir is the nodes' containerd config_path (hosts.toml directories),
	// mounted into the pod: look-ups go through the mirrors it names, as containerd's do.
	NodeRegistryConfigDir string

	// AuditInterval is the time between two background re-checks of every workload; zero
	// turns the re-check off.
	AuditInterval time.Duration
	// AuditRegistryBudget bounds the registry requests of one re-check interval per
	// registry host.
	AuditRegistryBudget int
	// AuditReports has the re-check write OpenReports Reports (reports.openreports.io).
	AuditReports bool
	// LeaderElectionNamespace holds the re-check's Lease; empty means the pod's namespace.
	LeaderElectionNamespace string

	// draining reports whether SIGTERM came: the readiness check fails from then on.
	draining func() bool
}

// Validate checks the configuration as a whole.
func (c *config) Validate() error {
	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not a TCP port", c.Port))
	}
	if c.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-delay %s is negative", c.ShutdownDelay))
	}
	if (c.CredentialProviderConfig == "") != (c.CredentialProviderBinDir == "") {
		errs = append(errs, errors.New("--image-credential-provider-config and --image-credential-provider-bin-dir go together"))
	}
	if c.AuditInterval < 0 {
		errs = append(errs, fmt.Errorf("--audit-interval %s is negative", c.AuditInterval))
	}
	if c.AuditInterval > 0 && c.AuditRegistryBudget < 1 {
		errs = append(errs, fmt.Errorf("--audit-registry-budget %d: at least one request per registry", c.AuditRegistryBudget))
	}
	if c.PolicyConfigMap != "" && c.PolicyFile != "" {
		errs = append(errs, errors.New("--policy-configmap and --policy-file are mutually exclusive"))
	}
	if c.PolicyConfigMap != "" {
		if _, err := c.policyKey(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *config) policyKey() (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(c.PolicyConfigMap, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return types.NamespacedName{}, fmt.Errorf("--policy-configmap %q is not NAMESPACE/NAME", c.PolicyConfigMap)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

func main() {
	var cfg config
	flag.StringVar(&cfg.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory holding tls.crt and tls.key (reloaded on change)")
	flag.IntVar(&cfg.Port, "port", 9443, "HTTPS port of the webhook server")
	flag.StringVar(&cfg.PolicyConfigMap, "policy-configmap", "", "NAMESPACE/NAME of the ConfigMap holding policy.yaml (watched; an invalid update keeps the last good policy)")
	flag.StringVar(&cfg.PolicyFile, "policy-file", "", "path of a policy.yaml read at start, instead of a ConfigMap")
	flag.StringVar(&cfg.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	flag.StringVar(&cfg.ProbeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	flag.StringVar(&cfg.PprofAddr, "pprof-bind-address", "", "address of the net/http/pprof endpoints (/debug/pprof/); empty or 0 disables them")
	flag.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", 5*time.Second, "how long to go on answering admissions after SIGTERM (not ready) before stopping, while the API server learns the pod is leaving its Service")
	flag.StringVar(&cfg.CredentialProviderConfig, "image-credential-provider-config", "", "the nodes' kubelet CredentialProviderConfig file or directory; its plugins' credentials are used after the pod's pull secrets, as the kubelet does")
	flag.StringVar(&cfg.CredentialProviderBinDir, "image-credential-provider-bin-dir", "", "directory of the credential provider plugin executables the config names")
	flag.StringVar(&cfg.NodeRegistryConfigDir, "node-registry-config-dir", "", "the nodes' containerd registry config_path (<dir>/<host>/hosts.toml, _default), read on every look-up; mirrors it names are asked first, as containerd does")
	zapOpts := zap.Options{}
	flag.DurationVar(&cfg.AuditInterval, "audit-interval", 0, "time between two background re-checks of every running workload (report, events, gauges); 0 turns the re-check off")
	flag.IntVar(&cfg.AuditRegistryBudget, "audit-registry-budget", recheck.DefaultBudgetPerRegistry, "registry requests one re-check interval may make to one registry host")
	flag.BoolVar(&cfg.AuditReports, "audit-reports", true, "have the re-check write an OpenReports Report (reports.openreports.io) per namespace; needs its CRD")
	flag.StringVar(&cfg.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the re-check's leader election Lease; empty means the pod's own")
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	ctx, draining := drainingSignalHandler(cfg.ShutdownDelay)
	cfg.draining = draining
	if err := run(ctx, cfg); err != nil {
		ctrl.Log.Error(err, "pullgate webhook failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	log := ctrl.Log.WithName("setup")
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid flags: %w", err)
	}

	initial := policy.Default()
	if cfg.PolicyFile != "" {
		p, err := policy.LoadFile(cfg.PolicyFile)
		if err != nil {
			return fmt.Errorf("loading policy file: %w", err)
		}
		initial = p
	}
	store := policy.NewStore(initial)

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building scheme: %w", err)
	}
	if err := reportsv1alpha1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building scheme: %w", err)
	}
	cacheOpts := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		// Every admission reads its namespace, its ServiceAccount and its pull secrets from
		// the cache. Nothing in pullgate modifies what it reads, so these are not deep-copied
		// on every read (that was a third of what a warm admission allocated); code that needs
		// to change such an object must copy it first.
		ByObject: map[client.Object]cache.ByObject{
			// Only docker config secrets matter to pulls: keep no other secret's data in memory.
			&corev1.Secret{}:         {Transform: dropNonPullSecretData, UnsafeDisableDeepCopy: new(true)},
			&corev1.ServiceAccount{}: {UnsafeDisableDeepCopy: new(true)},
			&corev1.Namespace{}:      {UnsafeDisableDeepCopy: new(true)},
		},
	}
	var policyKey types.NamespacedName
	if cfg.PolicyConfigMap != "" {
		policyKey, _ = cfg.policyKey()
		maps.Copy(cacheOpts.ByObject, policy.CacheByObject(policyKey))
	}

	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress: cfg.ProbeAddr,
		PprofBindAddress:       cfg.PprofAddr,
		WebhookServer:          webhook.NewServer(webhook.Options{Port: cfg.Port, CertDir: cfg.CertDir}),
		// Only the background re-check needs a leader; every replica answers admissions.
		LeaderElection:          cfg.AuditInterval > 0,
		LeaderElectionID:        "pullgate-recheck",
		LeaderElectionNamespace: cfg.LeaderElectionNamespace,
		// The re-check writes nothing another leader would undo; releasing at shutdown lets
		// the next replica take over without waiting for the lease to expire.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	if cfg.PolicyConfigMap != "" {
		// Read the policy once before anything is built from it (the registry cache's
		// lifetimes); the watcher keeps it current afterwards.
		if err := loadPolicyConfigMap(ctx, restCfg, scheme, policyKey, store); err != nil {
			log.Error(err, "Starting with the default policy until the ConfigMap is valid", "configMap", policyKey)
		}
		if err := policy.NewConfigMapWatcher(store, policyKey).SetupWithManager(mgr); err != nil {
			return err
		}
	}

	// Start the informers the checks read from now, so the first admission does not wait
	// for a sync and readiness means "can answer".
	for _, obj := range []client.Object{&corev1.Namespace{}, &corev1.Secret{}, &corev1.ServiceAccount{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("starting informer for %T: %w", obj, err)
		}
	}
	clusterNodes := nodes.NewTracker()
	if err := clusterNodes.Watch(ctx, mgr.GetCache()); err != nil {
		return err
	}

	// Cache lifetimes and size are read once: changing them takes a restart.
	pol := store.Load()
	registries := registrycache.New(
		registrycache.WithTagTTL(pol.Cache.TagTTL.Duration),
		registrycache.WithNegativeTTL(pol.Cache.NegativeTTL.Duration),
		registrycache.WithMaxEntries(pol.Cache.MaxEntries),
		// Read on every dial: a policy reload that opens or closes address ranges applies to
		// the next connection.
		registrycache.WithDialPolicyFunc(func() registrycache.DialPolicy {
			r := store.Load().Registries
			return registrycache.DialPolicy{AllowLoopback: r.AllowLoopback, AllowPrivateNetworks: r.AllowPrivateNetworks}
		}),
		// A lookup shared by concurrent admissions ends when the admission that started it
		// would have given up, so a hanging registry is recorded as failing (and its circuit
		// opens) after one deadline, not after a longer timeout of its own.
		registrycache.WithRequestTimeout(pol.LookupTimeout.Duration),
		registrycache.WithUserAgent("pullgate/"+version),
	)
	nodeCredentials, err := loadCredentialProviders(cfg, restCfg, mgr.GetClient(), mgr.GetAPIReader())
	if err != nil {
		return err
	}
	validator := &pgwebhook.Validator{
		Checker: &validate.Checker{Registry: registries, Nodes: clusterNodes.Get, NodeCredentials: nodeCredentials, RegistryHosts: registryHostsOf(cfg)},
		Policy:  store,
		Reader:  mgr.GetClient(),
		// A Secret or ServiceAccount created with the workload may not be in the cache yet.
		APIReader: mgr.GetAPIReader(),
		// The zero key when the policy comes from a file: no ConfigMap is guarded.
		PolicyConfigMap: policyKey,
	}
	mgr.GetWebhookServer().Register(pgwebhook.ValidatePath, &admission.Webhook{Handler: validator, LogConstructor: pgwebhook.RequestLogger})
	mutator := &pgwebhook.Mutator{
		Mutations: &mutate.Mutator{Registry: registries, Reader: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Nodes: clusterNodes.Get},
		Policy:    store,
		Reader:    mgr.GetClient(),
	}
	// Served always; it changes nothing unless the policy's mutations.enabled is true.
	mgr.GetWebhookServer().Register(pgwebhook.MutatePath, &admission.Webhook{Handler: mutator, LogConstructor: pgwebhook.RequestLogger})

	if cfg.AuditInterval > 0 {
		if err := setupRecheck(ctx, mgr, restCfg, scheme, cfg, validator.Checker, store); err != nil {
			return err
		}
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return fmt.Errorf("adding webhook readiness check: %w", err)
	}
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informers not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding informer readiness check: %w", err)
	}
	// Ready only once the nodes' snapshot holds every node: judged against a partial list, a
	// pod could be denied for the platform of the only node seen so far.
	if err := mgr.AddReadyzCheck("not-draining", func(*http.Request) error {
		if cfg.draining != nil && cfg.draining() {
			return errors.New("shutting down")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding drain readiness check: %w", err)
	}
	if err := mgr.AddReadyzCheck("nodes", func(*http.Request) error {
		if !clusterNodes.Synced() {
			return errors.New("node snapshot not built yet")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding node readiness check: %w", err)
	}

	log.Info("Starting pullgate webhook", "version", version, "port", cfg.Port, "policyConfigMap", cfg.PolicyConfigMap, "policyFile", cfg.PolicyFile)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

// setupRecheck adds the background re-check to mgr.
func setupRecheck(ctx context.Context, mgr ctrl.Manager, restCfg *rest.Config, scheme *runtime.Scheme, cfg config, checker *validate.Checker, store *policy.Store) error {
	opts := recheck.Options{
		Interval:          cfg.AuditInterval,
		BudgetPerRegistry: cfg.AuditRegistryBudget,
		Checker:           checker,
		Policy:            store,
		Reader:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Lister:            mgr.GetAPIReader(),
		Events:            mgr.GetEventRecorder("pullgate"),
		Log:               ctrl.Log.WithName("recheck"),
	}
	if cfg.AuditReports {
		// Not through the manager's cache: the Report kind may not be installed, and the
		// re-check reads its own Reports once per namespace and interval.
		c, err := client.New(restCfg, client.Options{Scheme: scheme})
		if err != nil {
			return fmt.Errorf("creating the re-check's report client: %w", err)
		}
		opts.Reports = c
	}
	if ttl := store.Load().Cache.TagTTL.Duration; ttl > cfg.AuditInterval {
		ctrl.Log.WithName("setup").Info("The policy's cache.tagTTL is longer than --audit-interval: a deleted tag is seen by the re-check only once its cached answer expires", "tagTTL", ttl, "auditInterval", cfg.AuditInterval)
	}
	c, err := recheck.New(opts)
	if err != nil {
		return err
	}
	return c.SetupWithManager(ctx, mgr)
}

// drainingSignalHandler returns a context that ends delay after the first SIGTERM or SIGINT,
// and a function that reports whether one came. A second signal exits at once. Until the
// context ends the webhook server goes on answering (its readiness check fails, so the pod
// leaves its Service's endpoints); then the manager stops it gracefully, finishing the
// admissions in flight.
func drainingSignalHandler(delay time.Duration) (context.Context, func() bool) {
	ctx, cancel := context.WithCancel(context.Background())
	var draining atomic.Bool
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		draining.Store(true)
		ctrl.Log.WithName("setup").Info("Signal received: still answering, not ready, until the delay ends", "shutdownDelay", delay)
		time.AfterFunc(delay, cancel)
		<-signals
		os.Exit(1)
	}()
	return ctx, draining.Load
}

// loadPolicyConfigMap puts the ConfigMap's policy in store, reading it directly from the API
// server since the manager's cache has not started yet.
func loadPolicyConfigMap(ctx context.Context, restCfg *rest.Config, scheme *runtime.Scheme, key types.NamespacedName, store *policy.Store) error {
	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	var cm corev1.ConfigMap
	if err := c.Get(ctx, key, &cm); err != nil {
		return fmt.Errorf("reading policy ConfigMap: %w", err)
	}
	p, err := policy.Parse([]byte(cm.Data[policy.DataKey]))
	if err != nil {
		return fmt.Errorf("parsing policy ConfigMap: %w", err)
	}
	store.Set(p)
	return nil
}

// dropNonPullSecretData empties the data of secrets the kubelet would not read as pull
// secrets, before they enter the informer cache (pullsecrets reports such a secret by its
// type alone), and strips managed fields, since a per-object transform replaces the default.
func dropNonPullSecretData(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	s.ManagedFields = nil
	if s.Type != corev1.SecretTypeDockerConfigJson && s.Type != corev1.SecretTypeDockercfg {
		s.Data, s.StringData = nil, nil
	}
	return s, nil
}
