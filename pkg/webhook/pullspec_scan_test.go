package webhook

import (
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
)

var (
	podGVK        = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	deploymentGVK = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	cronJobGVK    = metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}
)

// referencePullSpec decodes the pull spec with the API server's JSON decoder
// (sigs.k8s.io/json, case-sensitive) into a struct of the object's shape: what scanPullSpec
// must agree with.
func referencePullSpec(data []byte, keys []string) (*pullSpec, error) {
	switch len(keys) {
	case 1:
		var o struct {
			Spec pullSpec `json:"spec"`
		}
		err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, &o)
		return &o.Spec, err
	case 3:
		var o struct {
			Spec struct {
				Template struct {
					Spec pullSpec `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, &o)
		return &o.Spec.Template.Spec, err
	case 5:
		var o struct {
			Spec struct {
				JobTemplate struct {
					Spec struct {
						Template struct {
							Spec pullSpec `json:"spec"`
						} `json:"template"`
					} `json:"spec"`
				} `json:"jobTemplate"`
			} `json:"spec"`
		}
		err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, &o)
		return &o.Spec.JobTemplate.Spec.Template.Spec, err
	}
	panic("no reference shape for this path")
}

const realisticPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-7d4b9c-x2k","namespace":"shop",
"labels":{"app":"web"},"annotations":{"note":"a \"quoted\" value, \u00e9 and \\ backslash"}},
"spec":{"volumes":[{"name":"kube-api-access","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}}],"defaultMode":420}},
{"name":"models","image":{"reference":"registry.example.com/ml/weights:2025.1","pullPolicy":"IfNotPresent"}}],
"nodeName":"node-7",
"initContainers":[{"name":"migrate","image":"registry.example.com/shop/migrate:1.4","resources":{},"imagePullPolicy":"IfNotPresent"}],
"containers":[{"name":"web","image":"registry.example.com/shop/web@sha256:` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `",
"env":[{"name":"A","value":"{\"nested\":[1,2,{\"x\":null}]}"}],"ports":[{"containerPort":8080,"protocol":"TCP"}],
"resources":{"limits":{"cpu":"500m","memory":"128Mi"}},"volumeMounts":[{"name":"kube-api-access","mountPath":"/var/run/secrets","readOnly":true},{"name":"models","mountPath":"/models"}],"livenessProbe":{"httpGet":{"path":"/healthz","port":8080},"initialDelaySeconds":3,"periodSeconds":1.5e1},
"imagePullPolicy":"Always"},{"name":"sidecar","image":"busybox:1.36"}],
"restartPolicy":"Always","serviceAccountName":"builder","imagePullSecrets":[{"name":"regcred"},{"name":"other"}],
"nodeSelector":{"kubernetes.io/arch":"arm64"},
"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/os","operator":"In","values":["linux"]}]}]}},"podAntiAffinity":{}},
"tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],
"ephemeralContainers":[{"name":"debug","image":"busybox:1.36","imagePullPolicy":"Never"}]},
"status":{}}`

func TestScanPullSpec(t *testing.T) {
	tests := []struct {
		desc    string
		gvk     metav1.GroupVersionKind
		json    string
		want    *corev1.PodSpec // nil: compare with the reference decoder only
		wantErr bool
	}{
		{desc: "a realistic pod", gvk: podGVK, json: realisticPod},
		{desc: "a deployment's template", gvk: deploymentGVK,
			json: `{"spec":{"replicas":3,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}}}}`,
			want: &corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}},
		{desc: "a cronjob's template", gvk: cronJobGVK,
			json: `{"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"job:1","name":"j"}]}}}}}}`,
			want: &corev1.PodSpec{Containers: []corev1.Container{{Name: "j", Image: "job:1"}}}},
		{desc: "a pod's spec key in a deployment is not its template", gvk: deploymentGVK,
			json: `{"spec":{"containers":[{"name":"x","image":"x:1"}]}}`, want: &corev1.PodSpec{}},
		{desc: "keys match case-sensitively, as in the API server", gvk: podGVK,
			json: `{"spec":{"Containers":[{"name":"x","image":"x:1"}]}}`, want: &corev1.PodSpec{}},
		{desc: "escaped keys and values are unescaped", gvk: podGVK,
			json: `{"spec":{"c\u006fntainers":[{"name":"x","image":"reg.io\/x:1"}]}}`,
			want: &corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "reg.io/x:1"}}}},
		{desc: "skipped strings with escaped quotes and trailing backslashes", gvk: podGVK,
			json: `{"metadata":{"a":"x\\","b":"\\\"}]","c":"\"{"},"spec":{"containers":[{"name":"x","image":"x:1"}]}}`,
			want: &corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x:1"}}}},
		{desc: "nulls are absent values", gvk: podGVK,
			json: `{"spec":{"containers":[null,{"name":null,"image":"x:1"}],"imagePullSecrets":null,"nodeSelector":null,"affinity":null}}`},
		{desc: "a node selector with null and escaped members", gvk: podGVK,
			json: `{"spec":{"nodeSelector":{"a":null,"k\u0062":"v\n","c":"d"}}}`,
			want: &corev1.PodSpec{NodeSelector: map[string]string{"a": "", "kb": "v\n", "c": "d"}}},
		{desc: "a repeated containers key decodes into what the first left, as the API server's decoder does", gvk: podGVK,
			json: `{"spec":{"containers":[{"name":"a","image":"evil:1"}],"containers":[{"name":"a"}],"imagePullSecrets":[{"name":"x"}],"imagePullSecrets":[{}]}}`,
			want: &corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "evil:1"}}, ImagePullSecrets: []corev1.LocalObjectReference{{Name: "x"}}}},
		{desc: "a null template is an empty spec", gvk: deploymentGVK, json: `{"spec":{"template":null}}`, want: &corev1.PodSpec{}},
		{desc: "a null object", gvk: podGVK, json: `null`, want: &corev1.PodSpec{}},
		{desc: "white space everywhere", gvk: podGVK,
			json: " {\n\t\"spec\" : { \"containers\" : [ { \"image\" : \"x:1\" , \"name\" : \"x\" } ] } } \n",
			want: &corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x:1"}}}},
		{desc: "image volumes, the mounts of them and the node name are read", gvk: podGVK,
			json: `{"spec":{"nodeName":"n1","volumes":[{"name":"cfg","configMap":{"name":"x"}},{"name":"m","image":{"reference":"reg.io/m:1","pullPolicy":"Always","x":{}}}],` +
				`"containers":[{"name":"c","image":"c:1","volumeMounts":[{"name":"m","mountPath":"/m"},{"name":"cfg","mountPath":"/c"}]}],` +
				`"initContainers":[{"name":"i","image":"i:1","volumeMounts":[{"mountPath":"/m","name":"m"}]}]}}`,
			want: &corev1.PodSpec{NodeName: "n1",
				Volumes:        []corev1.Volume{{Name: "m", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "reg.io/m:1", PullPolicy: corev1.PullAlways}}}},
				InitContainers: []corev1.Container{{Name: "i", Image: "i:1", VolumeMounts: []corev1.VolumeMount{{Name: "m"}}}},
				Containers:     []corev1.Container{{Name: "c", Image: "c:1", VolumeMounts: []corev1.VolumeMount{{Name: "m"}, {Name: "cfg"}}}}}},
		{desc: "mounts are dropped when no volume is an image volume", gvk: deploymentGVK,
			json: `{"spec":{"template":{"spec":{"volumes":[{"name":"e","emptyDir":{}}],"containers":[{"name":"c","image":"c:1","volumeMounts":[{"name":"e"}]}]}}}}`,
			want: &corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "c:1"}}}},
		{desc: "a null image source, then a repeated volumes key filling it in", gvk: podGVK,
			json: `{"spec":{"volumes":[{"name":"a","image":null},{"name":"b","image":{"reference":"b:1"}}],"volumes":[{"image":{"pullPolicy":"Never"}},{"image":{"pullPolicy":"Never"}}]}}`},
		{desc: "a repeated image key merges into the first", gvk: podGVK,
			json: `{"spec":{"volumes":[{"name":"a","image":{"reference":"a:1"},"image":{"pullPolicy":"Never"}}]}}`,
			want: &corev1.PodSpec{Volumes: []corev1.Volume{{Name: "a", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "a:1", PullPolicy: corev1.PullNever}}}}}},
		{desc: "an image source that is not an object", gvk: podGVK, json: `{"spec":{"volumes":[{"name":"a","image":"a:1"}]}}`, wantErr: true},
		{desc: "a volume reference that is not a string", gvk: podGVK, json: `{"spec":{"volumes":[{"image":{"reference":[]}}]}}`, wantErr: true},
		{desc: "volume mounts that are not an array", gvk: podGVK, json: `{"spec":{"containers":[{"volumeMounts":{}}]}}`, wantErr: true},
		{desc: "what decides the candidate nodes: nodeName, tolerations, hostNetwork", gvk: podGVK,
			json: `{"spec":{"nodeName":"node-a","hostNetwork":true,"tolerations":[{"key":"gpu","operator":"Exists","effect":"NoSchedule"}],"containers":[{"name":"x","image":"x:1"}]}}`,
			want: &corev1.PodSpec{NodeName: "node-a", HostNetwork: true, Tolerations: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
				Containers: []corev1.Container{{Name: "x", Image: "x:1"}}}},
		{desc: "tolerations that are not an array", gvk: podGVK, json: `{"spec":{"tolerations":{}}}`, wantErr: true},
		{desc: "hostNetwork that is not a bool", gvk: podGVK, json: `{"spec":{"hostNetwork":"yes"}}`, wantErr: true},
		{desc: "an image that is not a string", gvk: podGVK, json: `{"spec":{"containers":[{"image":5}]}}`, wantErr: true},
		{desc: "containers that are not an array", gvk: podGVK, json: `{"spec":{"containers":{}}}`, wantErr: true},
		{desc: "a spec that is not an object", gvk: podGVK, json: `{"spec":[]}`, wantErr: true},
		{desc: "a node selector with a number", gvk: podGVK, json: `{"spec":{"nodeSelector":{"a":1}}}`, wantErr: true},
		{desc: "an unterminated string", gvk: podGVK, json: `{"spec":{"containers":[{"image":"x`, wantErr: true},
		{desc: "data after the object", gvk: podGVK, json: `{"spec":{}} {}`, wantErr: true},
		{desc: "empty input", gvk: podGVK, json: ``, wantErr: true},
		{desc: "a control character in a kept string", gvk: podGVK, json: "{\"spec\":{\"serviceAccountName\":\"a\x01\"}}", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, ok, err := podSpecOf(tc.gvk, []byte(tc.json))
			if !ok {
				t.Fatalf("podSpecOf(%v) did not recognise the kind", tc.gvk)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			ref, rerr := referencePullSpec([]byte(tc.json), specPath(tc.gvk))
			if rerr != nil {
				t.Fatalf("the reference decoder failed where the scanner did not: %v", rerr)
			}
			if diff := cmp.Diff(ref.podSpec(), got); diff != "" {
				t.Errorf("scanner vs reference decoder (-want +got):\n%s", diff)
			}
			if tc.want != nil {
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("pod spec (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// FuzzPullSpecScan checks scanPullSpec against the API server's decoder on any valid JSON,
// repeated keys included: both fail, or both give the same pull spec. On any input it must
// not panic.
func FuzzPullSpecScan(f *testing.F) {
	f.Add(realisticPod, uint8(0))
	f.Add(`{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"b"}],"imagePullSecrets":[{"name":"s"}]}}}}`, uint8(1))
	f.Add(`{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"initContainers":[{"image":"i"}]}}}}}}`, uint8(2))
	f.Add(`{"spec":{"containers":[{"image":"\u00e9\ud83d\ude00"}],"nodeSelector":{"k":"v"}}}`, uint8(0))
	f.Add(`{"spec":{"containers":[{"image":1e3}]}}`, uint8(0))
	f.Add(`[{"spec":null}]`, uint8(0))
	f.Add(`{"spec":{"nodeName":"a","nodeName":null,"hostNetwork":true,"hostNetwork":null,"tolerations":[{"key":"k","value":"v"}],"tolerations":[{"effect":"NoSchedule"},{"key":"x"}]}}`, uint8(0))
	f.Add(`{"spec":{"template":{"spec":{"tolerations":null,"hostNetwork":false}}}}`, uint8(1))
	f.Add(`{"spec":{"containers":[{"name":"a","image":"evil:1"},{"image":"b"}],"containers":[{"name":"a"}],"containers":[null,null]}}`, uint8(0))
	f.Add(`{"spec":{"nodeName":"n","volumes":[{"name":"m","image":{"reference":"m:1","pullPolicy":"Never"}},{"name":"e","emptyDir":{}}],"containers":[{"name":"c","image":"c","volumeMounts":[{"name":"m"},null]}]}}`, uint8(0))
	f.Add(`{"spec":{"template":{"spec":{"volumes":[{"image":null},{"image":{}}],"volumes":[{"image":{"reference":"r"}},null,{"name":"x"}],"initContainers":[{"volumeMounts":[{"name":"a"}],"volumeMounts":[{}]}]}}}}`, uint8(1))
	f.Add(`{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"volumes":[{"name":"m","image":{"reference":"m","image":{}},"image":{"pullPolicy":"Always"}}],"containers":[{"volumeMounts":[{"name":"m"}]}]}}}}}}`, uint8(2))
	paths := [][]string{specPath(podGVK), specPath(deploymentGVK), specPath(cronJobGVK)}
	f.Fuzz(func(t *testing.T, data string, which uint8) {
		keys := paths[int(which)%len(paths)]
		got, err := scanPullSpec([]byte(data), keys)
		if !json.Valid([]byte(data)) {
			return
		}
		ref, rerr := referencePullSpec([]byte(data), keys)
		if (err != nil) != (rerr != nil) {
			t.Fatalf("scanner error %v, reference error %v, for %q", err, rerr, data)
		}
		if err != nil {
			return
		}
		if diff := cmp.Diff(ref.podSpec(), got.podSpec()); diff != "" {
			t.Fatalf("scanner vs reference decoder for %q (-want +got):\n%s", data, diff)
		}
	})
}

// BenchmarkScanPullSpec measures the scanner on the realistic pod. Issue 17 compared it
// here with a version over github.com/go-json-experiment/json/jsontext (commit eca4d6f,
// removed after; figures in BENCHMARKS.md).
func BenchmarkScanPullSpec(b *testing.B) {
	data := []byte(realisticPod)
	keys := specPath(podGVK)
	for _, bc := range []struct {
		name string
		scan func([]byte, []string) (*pullSpec, error)
	}{{"handwritten", scanPullSpec}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			// CPU time per operation as well as wall time, as loopCPU in bench_test.go
			// (package webhook_test): steadier on a machine other builds share.
			start, n := processCPU(), 0
			for b.Loop() {
				if _, err := bc.scan(data, keys); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(processCPU()-start)/float64(n), "cpu-ns/op")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
