package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
	"github.com/pullgate/pullgate/pkg/webhook"
)

// cacheReader reads objects as the manager's informer cache does: a map lookup and a deep
// copy. (The fake client round-trips through JSON and would make reads look far costlier
// than they are in the webhook.)
type cacheReader map[cacheKey]client.Object

type cacheKey struct {
	t   reflect.Type
	key types.NamespacedName
}

func (r cacheReader) add(objs ...client.Object) cacheReader {
	for _, o := range objs {
		r[cacheKey{reflect.TypeOf(o), client.ObjectKeyFromObject(o)}] = o
	}
	return r
}

func (r cacheReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	o, ok := r[cacheKey{reflect.TypeOf(obj), key}]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(o.DeepCopyObject()).Elem())
	return nil
}

func (r cacheReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("cacheReader does not list")
}

// benchSetup is what test/bench drives end to end, in process: a registry with the pod's
// images, the namespace and pull secret in the reader, a Validator whose cache is warm, and
// the AdmissionReview of a realistic pod. With hungApp, the app container's image is on a
// registry that never answers, whose circuit the set-up opens.
func benchSetup(b *testing.B, hungApp bool) (*webhook.Validator, admission.Request, []byte) {
	b.Helper()
	reg := testregistry.New(b)
	app := reg.Ref("bench/shop-web", ":1.4.2")
	cacheOpts := []registrycache.Option{registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true})}
	if hungApp {
		hung := testregistry.New(b)
		hung.SetFault(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		app = hung.Ref("bench/shop-web", ":1.4.2")
		cacheOpts = append(cacheOpts, registrycache.WithBreaker(1, time.Hour), registrycache.WithRequestTimeout(200*time.Millisecond))
	}
	migrate := reg.PushImage(b, "bench/migrate", "2.3.0", "linux", "amd64")
	reg.PushImage(b, "bench/shop-web", "1.4.2", "linux", "amd64")
	shipper := reg.PushImage(b, "bench/log-shipper", "3.2.1", "linux", "amd64")
	reg.PushIndex(b, "bench/envoy", "1.31", "linux/amd64", "linux/arm64")

	secret := testregistry.PullSecret("bench", "regcred", reg.Host, "bench", "bench-password")
	secret.UID, secret.ResourceVersion = "7e0f7a9c-1d2b-4c3d-8e4f-5a6b7c8d9e0f", "4711"
	reader := cacheReader{}.add(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench", ResourceVersion: "12", Labels: map[string]string{"kubernetes.io/metadata.name": "bench"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "default", ResourceVersion: "13"}},
		secret,
	)
	pol := policy.Default()
	pol.Registries.AllowLoopback = true
	v := &webhook.Validator{
		Checker: &validate.Checker{
			Registry: registrycache.New(cacheOpts...),
			Nodes:    func() *validate.Nodes { return benchNodes },
		},
		Policy: policy.NewStore(pol),
		Reader: reader,
	}

	// The pod a ReplicaSet controller creates for a Deployment: resources, env, probes,
	// security context, the projected ServiceAccount token volume, default tolerations.
	container := func(name, image string, port int32) corev1.Container {
		c := corev1.Container{
			Name: name, Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Env: []corev1.EnvVar{
				{Name: "LOG_LEVEL", Value: "info"},
				{Name: "SHOP_DB_HOST", Value: "postgres.shop.svc.cluster.local"},
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
				{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
			},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "config", MountPath: "/etc/shop", ReadOnly: true},
				{Name: "kube-api-access-7xk2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
			},
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}
		if port > 0 {
			c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}}
			probe := &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(port)}},
				PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
			}
			c.ReadinessProbe, c.LivenessProbe = probe, probe
		}
		return c
	}
	tolerate := func(key string) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}
	}
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "shop-web-7d9c5b8f6d-", Namespace: "bench",
			Labels:      map[string]string{"app.kubernetes.io/name": "shop-web", "pod-template-hash": "7d9c5b8f6d"},
			Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "shop-web-7d9c5b8f6d",
				UID: "0b6f2a52-3d1e-4c8b-9f0e-2a7d5c4b3e21", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{container("migrate", reg.Ref("bench/migrate", "@"+migrate.String()), 0)},
			Containers: []corev1.Container{
				container("web", app, 8080),
				container("log-shipper", reg.Ref("bench/log-shipper", ":3.2.1@"+shipper.String()), 0),
				container("proxy", reg.Ref("bench/envoy", ":1.31"), 15001),
			},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-web"}}}},
				{Name: "kube-api-access-7xk2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				}}}},
			},
			RestartPolicy:      corev1.RestartPolicyAlways,
			DNSPolicy:          corev1.DNSClusterFirst,
			ServiceAccountName: "default",
			NodeSelector:       map[string]string{corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"},
			ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "regcred"}},
			SecurityContext:    &corev1.PodSecurityContext{FSGroup: ptr.To[int64](2000)},
			SchedulerName:      corev1.DefaultSchedulerName,
			Tolerations:        []corev1.Toleration{tolerate(corev1.TaintNodeNotReady), tolerate(corev1.TaintNodeUnreachable)},
		},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	req := admissionv1.AdmissionRequest{
		UID:       "b3c5a1f0-0000-4000-8000-000000000001",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "bench",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req,
	})
	if err != nil {
		b.Fatal(err)
	}
	areq := admission.Request{AdmissionRequest: req}
	// Warm the cache (and, with hungApp, open the circuit: one timeout).
	if resp := v.Handle(b.Context(), areq); !resp.Allowed || (len(resp.Warnings) > 0) != hungApp {
		b.Fatalf("warming the cache: allowed=%v warnings=%q result=%+v", resp.Allowed, resp.Warnings, resp.Result)
	}
	reg.Reset()
	b.Cleanup(func() {
		if n := reg.TotalRequests(); n != 0 {
			b.Errorf("a warm admission sent %d registry requests", n)
		}
	})
	return v, areq, body
}

// BenchmarkHandleWarm is one admission through the Validator with every registry answer
// cached: decoding the pod, reading the namespace and pull secret, building the keyring,
// the checks, and the response.
// benchNodes is a cluster of a linux/amd64 and a linux/arm64 node.
var benchNodes = testnodes.Platforms(validate.Platform{OS: "linux", Architecture: "amd64"}, validate.Platform{OS: "linux", Architecture: "arm64"})

func BenchmarkHandleWarm(b *testing.B) {
	v, req, _ := benchSetup(b, false)
	ctx := context.Background()
	loopCPU(b, func() {
		if resp := v.Handle(ctx, req); !resp.Allowed {
			b.Fatalf("denied: %+v", resp.Result)
		}
	})
}

// BenchmarkServeHTTPWarm adds controller-runtime's admission plumbing (reading and decoding
// the AdmissionReview, encoding the answer), and compares it with a handler that allows
// everything: the in-process counterpart of test/bench's baseline.
func BenchmarkServeHTTPWarm(b *testing.B) {
	v, _, body := benchSetup(b, false)
	allow := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })
	for _, tc := range []struct {
		name    string
		handler admission.Handler
	}{
		{"baseline", allow},
		{"pullgate", v},
	} {
		b.Run(tc.name, func(b *testing.B) {
			wh := &admission.Webhook{Handler: tc.handler}
			loopCPU(b, func() {
				req := httptest.NewRequest(http.MethodPost, webhook.ValidatePath, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				wh.ServeHTTP(w, req)
				if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"allowed":true`)) {
					b.Fatalf("answer %d %s", w.Code, w.Body)
				}
			})
		})
	}
}

// cpuTime is this process's user and system CPU time. Benchmarks report it per operation as
// cpu-ns/op next to ns/op: on a machine shared with other builds, wall time per operation
// grows with their load, CPU time much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loopCPU runs op in a b.Loop and reports its CPU time per operation.
func loopCPU(b *testing.B, op func()) {
	b.Helper()
	b.ReportAllocs()
	start, n := cpuTime(), 0
	for b.Loop() {
		op()
		n++
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
}

// BenchmarkHandleCircuitOpen is BenchmarkHandleWarm with the app container's registry dead
// and its circuit open: test/bench's hang-circuit-open, in process. Such an admission should
// cost no more than a warm one.
func BenchmarkHandleCircuitOpen(b *testing.B) {
	v, req, _ := benchSetup(b, true)
	ctx := context.Background()
	loopCPU(b, func() {
		if resp := v.Handle(ctx, req); !resp.Allowed || len(resp.Warnings) != 1 {
			b.Fatalf("allowed=%v warnings=%q", resp.Allowed, resp.Warnings)
		}
	})
}
