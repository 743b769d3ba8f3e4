package webhook

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// withVolume adds an image volume named name to spec, mounted by the containers at the
// indexes in mountedBy.
func withVolume(spec corev1.PodSpec, name, image string, policy corev1.PullPolicy, mountedBy ...int) corev1.PodSpec {
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		Image: &corev1.ImageVolumeSource{Reference: image, PullPolicy: policy}}})
	for _, i := range mountedBy {
		spec.Containers[i].VolumeMounts = append(spec.Containers[i].VolumeMounts, corev1.VolumeMount{Name: name, MountPath: "/" + name, ReadOnly: true})
	}
	return spec
}

// TestImageVolumes: the image of an image volume (spec.volumes[].image) is pulled by the
// kubelet like a container's, with the pod's pull secrets and the volume's pull policy; it
// is checked like one, and its findings name the volume.
func TestImageVolumes(t *testing.T) {
	w := newWorld(t)
	good := w.public.Ref("app", ":v1")
	// The volumes' images live in a registry of their own, so that its requests count the
	// volumes' look-ups alone.
	vols := testregistry.New(t)
	vols.PushImage(t, "models", "v1", "linux", "amd64")
	vols.PushImage(t, "armonly", "v1", "linux", "arm64")
	deployKind := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	deployment := func(spec corev1.PodSpec) *appsv1.Deployment {
		return &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "web"},
			Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}},
		}
	}
	podReq := func(namespace string, spec corev1.PodSpec) func(t *testing.T) admission.Request {
		return func(t *testing.T) admission.Request {
			return request(t, admissionv1.Create, podKind, namespace, podObject(namespace, spec), nil)
		}
	}
	update := func(kind metav1.GroupVersionKind, cur, old runtime.Object) func(t *testing.T) admission.Request {
		return func(t *testing.T) admission.Request { return request(t, admissionv1.Update, kind, testNS, cur, old) }
	}
	tests := []struct {
		desc        string
		req         func(t *testing.T) admission.Request
		wantAllowed bool
		// wantText must be in the denial, or in the warnings when admitted.
		wantText []string
		// wantVolumeLookups: whether the volume's repository is asked for.
		wantVolumeLookups bool
	}{{
		desc:              "a mounted image volume whose tag does not exist",
		req:               podReq(testNS, withVolume(containers(good), "models", vols.Ref("models", ":v9"), "", 0)),
		wantText:          []string{`[TagNotFound] volume "models" (image "` + vols.Ref("models", ":v9") + `")`, "Fix:"},
		wantVolumeLookups: true,
	}, {
		desc:              "an image volume that exists",
		req:               podReq(testNS, withVolume(containers(good), "models", vols.Ref("models", ":v1"), corev1.PullIfNotPresent, 0)),
		wantAllowed:       true,
		wantVolumeLookups: true,
	}, {
		desc:              "in a namespace that only warns, the warning names the volume",
		req:               podReq("relaxed", withVolume(containers(good), "models", vols.Ref("nope", ":v1"), "", 0)),
		wantAllowed:       true,
		wantText:          []string{`[ImageNotFound] volume "models"`},
		wantVolumeLookups: true,
	}, {
		desc:        "pull policy Never is not looked up",
		req:         podReq(testNS, withVolume(containers(good), "models", vols.Ref("models", ":v9"), corev1.PullNever, 0)),
		wantAllowed: true,
	}, {
		desc: "an image volume no container mounts stops no container, so it is not checked",
		req:  podReq(testNS, withVolume(containers(good), "models", vols.Ref("models", ":v9"), "")),
		// kubelet: toKubeContainerImageVolumes fails only the containers that mount it.
		wantAllowed: true,
	}, {
		desc: "an image volume an init container mounts",
		req: func() func(t *testing.T) admission.Request {
			spec := withVolume(containers(good), "models", vols.Ref("models", ":v9"), "")
			spec.InitContainers = []corev1.Container{{Name: "warm", Image: good, VolumeMounts: []corev1.VolumeMount{{Name: "models", MountPath: "/m"}}}}
			return podReq(testNS, spec)
		}(),
		wantText:          []string{`[TagNotFound] volume "models"`},
		wantVolumeLookups: true,
	}, {
		desc: "a private image volume is pulled with the pod's pull secrets",
		req: func() func(t *testing.T) admission.Request {
			spec := withVolume(containers(good), "models", w.private.Ref("app", ":v1"), "", 0)
			spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
			return podReq(testNS, spec)
		}(),
		wantAllowed: true,
	}, {
		desc:     "a private image volume without pull secrets",
		req:      podReq(testNS, withVolume(containers(good), "models", w.private.Ref("app", ":v1"), "", 0)),
		wantText: []string{`[NoCredentials] volume "models"`},
	}, {
		desc:              "an image volume built for another platform than the nodes'",
		req:               podReq(testNS, withVolume(containers(good), "models", vols.Ref("armonly", ":v1"), "", 0)),
		wantText:          []string{`[PlatformMismatch] volume "models"`},
		wantVolumeLookups: true,
	}, {
		desc: "a Deployment's template with a bad image volume",
		req: func(t *testing.T) admission.Request {
			return request(t, admissionv1.Create, deployKind, testNS, deployment(withVolume(containers(good), "models", vols.Ref("models", ":v9"), "", 0)), nil)
		},
		wantText:          []string{`[TagNotFound] volume "models"`},
		wantVolumeLookups: true,
	}, {
		desc: "a Deployment update that changes only the image volume's reference is checked",
		req: update(deployKind,
			deployment(withVolume(containers(good), "models", vols.Ref("models", ":v9"), "", 0)),
			deployment(withVolume(containers(good), "models", vols.Ref("models", ":v1"), "", 0))),
		wantText:          []string{`[TagNotFound] volume "models"`},
		wantVolumeLookups: true,
	}, {
		desc: "a Deployment update that starts mounting an image volume is checked",
		req: update(deployKind,
			deployment(withVolume(containers(good), "models", vols.Ref("models", ":v9"), "", 0)),
			deployment(withVolume(containers(good), "models", vols.Ref("models", ":v9"), ""))),
		wantText:          []string{`[TagNotFound] volume "models"`},
		wantVolumeLookups: true,
	}, {
		desc: "a Deployment update that changes nothing pulled is not looked up",
		req: func() func(t *testing.T) admission.Request {
			cur := deployment(withVolume(containers(good), "models", vols.Ref("models", ":v9"), "", 0))
			cur.Spec.Template.Labels = map[string]string{"restartedAt": "now"}
			return update(deployKind, cur, deployment(withVolume(containers(good), "models", vols.Ref("models", ":v9"), "", 0)))
		}(),
		wantAllowed: true,
	}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			v := w.validator(basePolicy()) // a cache of its own: look-ups are counted
			vols.Reset()
			resp := v.Handle(t.Context(), tc.req(t))
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v (%s; warnings %q)", resp.Allowed, tc.wantAllowed, resp.Result.Message, resp.Warnings)
			}
			text := resp.Result.Message
			if resp.Allowed {
				text = strings.Join(resp.Warnings, "\n")
			}
			for _, want := range tc.wantText {
				if !strings.Contains(text, want) {
					t.Errorf("response lacks %q:\n%s", want, text)
				}
			}
			if tc.wantAllowed && len(tc.wantText) == 0 && len(resp.Warnings) > 0 {
				t.Errorf("unexpected warnings: %q", resp.Warnings)
			}
			if n := vols.TotalRequests(); (n > 0) != tc.wantVolumeLookups {
				t.Errorf("%d requests for the volume's image; want look-ups: %v", n, tc.wantVolumeLookups)
			}
		})
	}
}
