package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// DataKey is the ConfigMap key that holds the policy document.
const DataKey = "policy.yaml"

// ControllerName is the name of the controller SetupWithManager adds. controller-runtime
// requires controller names to be unique in a process unless the manager's controller
// options set SkipNameValidation (tests that start several managers need it).
const ControllerName = "pullgate-policy"

var (
	reloadErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pullgate_policy_reload_errors_total",
		Help: "Policy ConfigMap contents rejected as invalid; the last good policy stayed in force.",
	})
	lastReloadSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pullgate_policy_last_reload_success",
		Help: "1 if the last policy ConfigMap change was applied (or none has failed yet), 0 if it was rejected.",
	})
)

func init() {
	metrics.Registry.MustRegister(reloadErrors, lastReloadSuccess)
}

// ConfigMapWatcher keeps a Store in step with one ConfigMap's policy.yaml. It is a
// reconciler for that ConfigMap alone:
//   - a valid policy is put in force (Store.Set) and logged as "policy updated";
//   - an invalid one, or a ConfigMap without the key, leaves the last good policy in force,
//     is logged with its field errors, increments pullgate_policy_reload_errors_total and
//     sets pullgate_policy_last_reload_success to 0 (a valid one sets it back to 1);
//   - a deleted ConfigMap leaves the last good policy in force and is logged.
//
// Each content (UID and resourceVersion) is judged once, so informer resyncs neither
// re-apply a policy nor count an invalid one again.
type ConfigMapWatcher struct {
	store   *Store
	key     types.NamespacedName
	dataKey string
	reader  client.Reader

	mu   sync.Mutex
	seen string // UID/resourceVersion last judged
}

var _ reconcile.Reconciler = (*ConfigMapWatcher)(nil)

// WatcherOption configures a ConfigMapWatcher.
type WatcherOption func(*ConfigMapWatcher)

// WithReader sets where the watcher reads the ConfigMap. Default: the manager's client
// (backed by its cache), set by SetupWithManager.
func WithReader(r client.Reader) WatcherOption {
	return func(w *ConfigMapWatcher) { w.reader = r }
}

// WithDataKey sets the ConfigMap key that holds the policy. Default: DataKey ("policy.yaml").
func WithDataKey(k string) WatcherOption {
	return func(w *ConfigMapWatcher) { w.dataKey = k }
}

// NewConfigMapWatcher returns a watcher that keeps store in step with the ConfigMap key.
func NewConfigMapWatcher(store *Store, key types.NamespacedName, opts ...WatcherOption) *ConfigMapWatcher {
	w := &ConfigMapWatcher{store: store, key: key, dataKey: DataKey}
	for _, o := range opts {
		o(w)
	}
	return w
}

// SetupWithManager adds the watcher to mgr as a controller for the one ConfigMap. The
// controller does not need leader election: every replica must load the policy.
//
// The controller watches ConfigMaps through mgr's cache. Unless the manager was built with
// cache.Options.ByObject from CacheByObject, that cache lists and watches every ConfigMap in
// the cluster, which needs cluster-wide RBAC and memory for all of them.
func (w *ConfigMapWatcher) SetupWithManager(mgr manager.Manager) error {
	if w.reader == nil {
		w.reader = mgr.GetClient()
	}
	// No reload has failed yet.
	lastReloadSuccess.Set(1)
	err := builder.ControllerManagedBy(mgr).
		Named(ControllerName).
		For(&corev1.ConfigMap{}, builder.WithPredicates(predicate.NewPredicateFuncs(w.isTarget))).
		WithOptions(controller.Options{NeedLeaderElection: new(false), MaxConcurrentReconciles: 1}).
		Complete(w)
	if err != nil {
		return fmt.Errorf("setting up the policy ConfigMap watcher: %w", err)
	}
	return nil
}

// CacheByObject returns the cache restriction (for cache.Options.ByObject) that makes the
// manager cache hold only the ConfigMap key: its namespace and a metadata.name field
// selector. With it, a namespaced Role that allows get, list and watch on configmaps with
// resourceNames [key.Name] is enough. It restricts every ConfigMap read through the
// manager's cached client, so merge it with care if anything else reads ConfigMaps.
func CacheByObject(key types.NamespacedName) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {
			Namespaces: map[string]cache.Config{key.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", key.Name),
		},
	}
}

func (w *ConfigMapWatcher) isTarget(obj client.Object) bool {
	return obj.GetNamespace() == w.key.Namespace && obj.GetName() == w.key.Name
}

// Reconcile loads the ConfigMap and puts its policy in force if it is valid. It returns an
// error (and is retried) only when the ConfigMap cannot be read; an invalid policy is not
// retried, since only a new update can fix it.
func (w *ConfigMapWatcher) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req.NamespacedName != w.key {
		return reconcile.Result{}, nil
	}
	log := logf.FromContext(ctx).WithValues("configMap", w.key.String())

	var cm corev1.ConfigMap
	if err := w.reader.Get(ctx, w.key, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			w.mu.Lock()
			w.seen = ""
			w.mu.Unlock()
			log.Info("policy ConfigMap not found; keeping the last good policy", "policyVersion", w.store.Version())
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading policy ConfigMap %s: %w", w.key, err)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	seen := string(cm.UID) + "/" + cm.ResourceVersion
	if seen == w.seen {
		return reconcile.Result{}, nil
	}
	w.seen = seen

	p, err := w.policyFrom(&cm)
	if err != nil {
		reloadErrors.Inc()
		lastReloadSuccess.Set(0)
		log.Error(err, "policy rejected; keeping the last good policy",
			"resourceVersion", cm.ResourceVersion, "fieldErrors", fieldErrorStrings(err),
			"policyVersion", w.store.Version())
		return reconcile.Result{}, nil
	}
	w.store.Set(p)
	lastReloadSuccess.Set(1)
	log.Info("policy updated", "resourceVersion", cm.ResourceVersion, "policyVersion", w.store.Version())
	return reconcile.Result{}, nil
}

// policyFrom parses the policy the ConfigMap holds under the data key (in data, or else in
// binaryData). A ConfigMap without the key is invalid: its error is a *ValidationError
// naming data[<key>].
func (w *ConfigMapWatcher) policyFrom(cm *corev1.ConfigMap) (*Policy, error) {
	if s, ok := cm.Data[w.dataKey]; ok {
		return Parse([]byte(s))
	}
	if b, ok := cm.BinaryData[w.dataKey]; ok {
		return Parse(b)
	}
	return nil, &ValidationError{Errors: field.ErrorList{
		field.Required(field.NewPath("data").Key(w.dataKey), "the ConfigMap must hold the policy under this key"),
	}}
}

// fieldErrorStrings returns each field error in err, or nil when it holds none.
func fieldErrorStrings(err error) []string {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	out := make([]string, len(ve.Errors))
	for i, fe := range ve.Errors {
		out[i] = fe.Error()
	}
	return out
}
