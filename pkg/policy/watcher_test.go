package policy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither a counter nor a gauge", m.Desc())
	return 0
}

// logSink collects log lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) context(t *testing.T) context.Context {
	logger := funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, args)
	}, funcr.Options{})
	return logf.IntoContext(t.Context(), logger)
}

// take returns the lines logged since the last take.
func (l *logSink) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.lines, "\n")
	l.lines = nil
	return s
}

func TestConfigMapWatcherReconcile(t *testing.T) {
	key := types.NamespacedName{Namespace: "pullgate-system", Name: "pullgate-policy"}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Data:       map[string]string{DataKey: "checks:\n  unpinnedTag: enforce\n"},
	}
	c := fake.NewClientBuilder().WithObjects(cm).Build()
	initial := Default()
	store := NewStore(initial)
	w := NewConfigMapWatcher(store, key, WithReader(c))
	var logs logSink
	ctx := logs.context(t)
	req := reconcile.Request{NamespacedName: key}

	reconcileOK := func(step string) {
		t.Helper()
		if res, err := w.Reconcile(ctx, req); err != nil || !res.IsZero() {
			t.Fatalf("%s: Reconcile() = %+v, %v; want no requeue and no error", step, res, err)
		}
	}
	update := func(mutate func(*corev1.ConfigMap)) {
		t.Helper()
		var cur corev1.ConfigMap
		if err := c.Get(ctx, key, &cur); err != nil {
			t.Fatal(err)
		}
		mutate(&cur)
		if err := c.Update(ctx, &cur); err != nil {
			t.Fatal(err)
		}
	}
	errorsBefore := metricValue(t, reloadErrors)
	wantErrors := func(step string, n float64) {
		t.Helper()
		if got := metricValue(t, reloadErrors) - errorsBefore; got != n {
			t.Errorf("%s: pullgate_policy_reload_errors_total rose by %v, want %v", step, got, n)
		}
	}
	wantSuccess := func(step string, v float64) {
		t.Helper()
		if got := metricValue(t, lastReloadSuccess); got != v {
			t.Errorf("%s: pullgate_policy_last_reload_success = %v, want %v", step, got, v)
		}
	}

	// A valid policy is put in force.
	reconcileOK("first load")
	good := store.Load()
	if good == initial || good.ModeFor(CheckUnpinnedTag, nil) != Enforce || store.Version() != 1 {
		t.Fatalf("first load: policy not put in force (version %d, unpinnedTag %q)",
			store.Version(), good.ModeFor(CheckUnpinnedTag, nil))
	}
	wantSuccess("first load", 1)
	if l := logs.take(); !strings.Contains(l, `"msg"="policy updated"`) || !strings.Contains(l, `"resourceVersion"=`) {
		t.Errorf("first load: log %q lacks \"policy updated\" with the resourceVersion", l)
	}

	// The same content again (an informer resync) is not applied again.
	reconcileOK("resync")
	if store.Version() != 1 {
		t.Errorf("resync: version = %d, want 1", store.Version())
	}
	if l := logs.take(); l != "" {
		t.Errorf("resync logged %q", l)
	}

	// An invalid policy keeps the last good one and is counted.
	update(func(cm *corev1.ConfigMap) { cm.Data[DataKey] = "checks:\n  platfrom: warn\nlookupTimeout: 0s\n" })
	reconcileOK("invalid update")
	if store.Load() != good || store.Version() != 1 {
		t.Errorf("invalid update: the last good policy was replaced (version %d)", store.Version())
	}
	wantErrors("invalid update", 1)
	wantSuccess("invalid update", 0)
	l := logs.take()
	for _, want := range []string{"policy rejected", "checks.platfrom", "lookupTimeout", `"fieldErrors"=`} {
		if !strings.Contains(l, want) {
			t.Errorf("invalid update: log %q lacks %q", l, want)
		}
	}

	// The same invalid content again is not counted again.
	reconcileOK("invalid resync")
	wantErrors("invalid resync", 1)

	// A ConfigMap without the key is invalid too.
	update(func(cm *corev1.ConfigMap) { cm.Data = map[string]string{"other.yaml": "{}"} })
	reconcileOK("missing key")
	if store.Load() != good {
		t.Error("missing key: the last good policy was replaced")
	}
	wantErrors("missing key", 2)
	wantSuccess("missing key", 0)
	if l := logs.take(); !strings.Contains(l, "data[policy.yaml]") {
		t.Errorf("missing key: log %q does not name the key", l)
	}

	// A valid update after invalid ones is put in force.
	update(func(cm *corev1.ConfigMap) { cm.Data = map[string]string{DataKey: "onRegistryError: enforce\n"} })
	reconcileOK("valid update")
	if store.Version() != 2 || store.Load().RegistryErrorMode(nil) != Enforce {
		t.Errorf("valid update: not put in force (version %d)", store.Version())
	}
	wantSuccess("valid update", 1)
	wantErrors("valid update", 2)
	latest := store.Load()
	logs.take()

	// Deleting the ConfigMap keeps the last good policy.
	if err := c.Delete(ctx, cm); err != nil {
		t.Fatal(err)
	}
	reconcileOK("deleted")
	if store.Load() != latest || store.Version() != 2 {
		t.Error("deleted: the policy changed")
	}
	wantErrors("deleted", 2)
	if l := logs.take(); !strings.Contains(l, "not found; keeping the last good policy") {
		t.Errorf("deleted: log %q does not say so", l)
	}

	// Recreated, it is read again.
	recreated := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		BinaryData: map[string][]byte{DataKey: []byte("lookupTimeout: 2s\n")},
	}
	if err := c.Create(ctx, recreated); err != nil {
		t.Fatal(err)
	}
	reconcileOK("recreated")
	if store.Version() != 3 || store.Load().LookupTimeout.Duration.String() != "2s" {
		t.Errorf("recreated (policy in binaryData): not put in force (version %d)", store.Version())
	}

	// Requests for other objects are ignored.
	other := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: key.Namespace, Name: "other"}}
	if _, err := w.Reconcile(ctx, other); err != nil || store.Version() != 3 {
		t.Errorf("other ConfigMap: Reconcile() error = %v, version %d", err, store.Version())
	}
}

func TestConfigMapWatcherReadError(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "policy"}
	boom := errors.New("apiserver unavailable")
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return boom
		},
	}).Build()
	store := NewStore(nil)
	before := store.Load()
	errorsBefore := metricValue(t, reloadErrors)
	w := NewConfigMapWatcher(store, key, WithReader(c))

	_, err := w.Reconcile(t.Context(), reconcile.Request{NamespacedName: key})
	if !errors.Is(err, boom) {
		t.Errorf("Reconcile() error = %v, want it to wrap %v (so that it is retried)", err, boom)
	}
	if store.Load() != before || store.Version() != 0 {
		t.Error("a read error changed the policy")
	}
	if got := metricValue(t, reloadErrors) - errorsBefore; got != 0 {
		t.Errorf("a read error counted as %v invalid policies", got)
	}
}

func TestConfigMapWatcherDataKey(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "policy"}
	c := fake.NewClientBuilder().WithObjects(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Data:       map[string]string{"custom.yaml": "onRegistryError: enforce"},
	}).Build()
	store := NewStore(nil)
	w := NewConfigMapWatcher(store, key, WithReader(c), WithDataKey("custom.yaml"))
	if _, err := w.Reconcile(t.Context(), reconcile.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	if store.Version() != 1 || store.Load().OnRegistryError != Enforce {
		t.Errorf("WithDataKey: policy not loaded from custom.yaml (version %d)", store.Version())
	}
}

func TestConfigMapWatcherIsTarget(t *testing.T) {
	w := NewConfigMapWatcher(NewStore(nil), types.NamespacedName{Namespace: "ns", Name: "policy"})
	for _, tc := range []struct {
		ns, name string
		want     bool
	}{
		{"ns", "policy", true},
		{"ns", "other", false},
		{"other", "policy", false},
	} {
		obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: tc.ns, Name: tc.name}}
		if got := w.isTarget(obj); got != tc.want {
			t.Errorf("isTarget(%s/%s) = %v, want %v", tc.ns, tc.name, got, tc.want)
		}
	}
}

func TestCacheByObject(t *testing.T) {
	key := types.NamespacedName{Namespace: "pullgate-system", Name: "pullgate-policy"}
	byObject := CacheByObject(key)
	if len(byObject) != 1 {
		t.Fatalf("CacheByObject() has %d entries, want 1", len(byObject))
	}
	for obj, by := range byObject {
		if _, ok := obj.(*corev1.ConfigMap); !ok {
			t.Errorf("CacheByObject() restricts %T, want *corev1.ConfigMap", obj)
		}
		if _, ok := by.Namespaces[key.Namespace]; !ok || len(by.Namespaces) != 1 {
			t.Errorf("Namespaces = %v, want only %q", by.Namespaces, key.Namespace)
		}
		if got := by.Field.String(); got != "metadata.name=pullgate-policy" {
			t.Errorf("Field = %q, want metadata.name=pullgate-policy", got)
		}
	}
}

func TestMetricsRegistered(t *testing.T) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range families {
		found[f.GetName()] = true
	}
	for _, name := range []string{"pullgate_policy_reload_errors_total", "pullgate_policy_last_reload_success"} {
		if !found[name] {
			t.Errorf("%s is not on controller-runtime's metrics.Registry", name)
		}
	}
}

// TestSetupWithManager checks that the watcher wires into a manager. The manager never
// starts, so no API server is needed; the real API path is covered end to end.
func TestSetupWithManager(t *testing.T) {
	mgr, err := manager.New(&rest.Config{Host: "https://127.0.0.1:1"}, manager.Options{
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: new(true)},
	})
	if err != nil {
		t.Fatalf("manager.New() error = %v", err)
	}
	w := NewConfigMapWatcher(NewStore(nil), types.NamespacedName{Namespace: "ns", Name: "policy"})
	if err := w.SetupWithManager(mgr); err != nil {
		t.Fatalf("SetupWithManager() error = %v", err)
	}
	if w.reader == nil {
		t.Error("SetupWithManager() did not set the reader to the manager's client")
	}
	if got := metricValue(t, lastReloadSuccess); got != 1 {
		t.Errorf("pullgate_policy_last_reload_success = %v before any reload, want 1", got)
	}
}
