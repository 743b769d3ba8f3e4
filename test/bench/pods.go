package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// podImages are the images of one benchmark pod: an init container and three containers.
type podImages struct {
	Init, App, Sidecar, Proxy string
}

// uidPlaceholder is replaced by a fresh UID (same length) in every request.
const uidPlaceholder = "00000000-0000-0000-0000-000000000000"

// reviewBody is the AdmissionReview a kube-apiserver sends for the CREATE of a pod a
// ReplicaSet controller made: what a Deployment rollout produces. The pod has resources,
// probes, env, volumes (including the projected ServiceAccount token the ServiceAccount
// admission plugin adds before webhooks run), the default tolerations and a pull secret.
func reviewBody(images podImages) ([]byte, error) {
	pod := realisticPod(images)
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:             uidPlaceholder,
			Kind:            metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:        metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			RequestKind:     &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			RequestResource: &metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:            "",
			Namespace:       benchNamespace,
			Operation:       admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{
				Username: "system:serviceaccount:kube-system:replicaset-controller",
				UID:      "5d3c2f4e-8f7a-4b8e-9a3c-1b2d3e4f5a6b",
				Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
			},
			Object:  runtime.RawExtension{Raw: raw},
			DryRun:  ptr.To(false),
			Options: runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
		},
	}
	return json.Marshal(review)
}

func realisticPod(images podImages) *corev1.Pod {
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	mounts := []corev1.VolumeMount{
		{Name: "config", MountPath: "/etc/shop", ReadOnly: true},
		{Name: "kube-api-access-7xk2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
	}
	env := []corev1.EnvVar{
		{Name: "LOG_LEVEL", Value: "info"},
		{Name: "SHOP_DB_HOST", Value: "postgres.shop.svc.cluster.local"},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
	}
	probe := func(path string, port int) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(int32(port)), Scheme: corev1.URISchemeHTTP}},
			PeriodSeconds:    10,
			TimeoutSeconds:   1,
			SuccessThreshold: 1,
			FailureThreshold: 3,
		}
	}
	ctr := func(name, image string, port int) corev1.Container {
		c := corev1.Container{
			Name:                     name,
			Image:                    image,
			Env:                      env,
			Resources:                res,
			VolumeMounts:             mounts,
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy:          corev1.PullIfNotPresent,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				RunAsNonRoot:             ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}
		if port > 0 {
			c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port), Protocol: corev1.ProtocolTCP}}
			c.ReadinessProbe = probe("/readyz", port)
			c.LivenessProbe = probe("/healthz", port)
		}
		return c
	}
	tolerate := func(key string) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "shop-web-7d9c5b8f6d-",
			Namespace:    benchNamespace,
			Labels:       map[string]string{"app.kubernetes.io/name": "shop-web", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d9c5b8f6d"},
			Annotations:  map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "shop-web-7d9c5b8f6d",
				UID: "0b6f2a52-3d1e-4c8b-9f0e-2a7d5c4b3e21", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{ctr("migrate", images.Init, 0)},
			Containers: []corev1.Container{
				ctr("web", images.App, 8080),
				ctr("log-shipper", images.Sidecar, 0),
				ctr("proxy", images.Proxy, 15001),
			},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-web"}}}},
				{Name: "kube-api-access-7xk2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				}}}},
			},
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			DNSPolicy:                     corev1.DNSClusterFirst,
			ServiceAccountName:            "default",
			// The single-arch images are amd64, so the pod says where it can run.
			NodeSelector:       map[string]string{corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"},
			ImagePullSecrets:   []corev1.LocalObjectReference{{Name: benchPullSecret}},
			SecurityContext:    &corev1.PodSecurityContext{FSGroup: ptr.To[int64](2000)},
			SchedulerName:      corev1.DefaultSchedulerName,
			Tolerations:        []corev1.Toleration{tolerate(corev1.TaintNodeNotReady), tolerate(corev1.TaintNodeUnreachable)},
			EnableServiceLinks: ptr.To(true),
			PreemptionPolicy:   ptr.To(corev1.PreemptLowerPriority),
			Priority:           ptr.To[int32](0),
		},
	}
}

// bodySource hands out request bodies: one of a few pod shapes, each with a fresh UID.
type bodySource struct {
	templates [][]byte
	n         atomic.Uint64
}

func newBodySource(shapes ...podImages) (*bodySource, error) {
	s := &bodySource{}
	for _, sh := range shapes {
		b, err := reviewBody(sh)
		if err != nil {
			return nil, err
		}
		if bytes.Count(b, []byte(uidPlaceholder)) != 1 {
			return nil, fmt.Errorf("review template has no single UID placeholder")
		}
		s.templates = append(s.templates, b)
	}
	return s, nil
}

// next returns the i-th body (shapes in turn) and its UID.
func (s *bodySource) next() (body []byte, uid string) {
	i := s.n.Add(1) - 1
	t := s.templates[i%uint64(len(s.templates))]
	id := strconv.FormatUint(i, 16)
	uid = uidPlaceholder[:len(uidPlaceholder)-len(id)] + id
	return bytes.Replace(t, []byte(uidPlaceholder), []byte(uid), 1), uid
}
