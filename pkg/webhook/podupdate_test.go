package webhook

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestPodUpdate: an update of a Pod is checked when it changes a container's image, and then
// only the containers whose image changed are looked up (with the pod's secrets and
// placement); an update that changes no image asks no registry.
func TestPodUpdate(t *testing.T) {
	w := newWorld(t)
	good, bad, bad2 := w.public.Ref("app", ":v1"), w.public.Ref("nope", ":v1"), w.public.Ref("app", ":v9")
	private := w.private.Ref("app", ":v1")
	pod := func(initImage string, images ...string) *corev1.Pod {
		p := podObject(testNS, containers(images...))
		if initImage != "" {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: initImage}}
		}
		p.Spec.NodeName = "node-1" // bound, as most pods are by the time they are updated
		return p
	}
	withSecret := func(p *corev1.Pod) *corev1.Pod {
		p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
		return p
	}
	labelled := func(p *corev1.Pod) *corev1.Pod {
		p.Labels = map[string]string{"rollout": "2"}
		return p
	}
	withImageVolume := func(p *corev1.Pod, image string) *corev1.Pod {
		p.Spec.Volumes = []corev1.Volume{{Name: "models", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: image}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "models", MountPath: "/models"}}
		return p
	}
	tests := []struct {
		desc        string
		old, cur    *corev1.Pod
		subResource string
		wantAllowed bool
		// wantText must be in the denial; wantAbsent must not.
		wantText, wantAbsent []string
		// wantLookups: whether the registry is asked at all.
		wantLookups bool
	}{{
		desc: "kubectl set image to a tag that does not exist",
		old:  pod("", good), cur: pod("", bad2),
		wantText:    []string{`[TagNotFound] container "c0"`},
		wantLookups: true,
	}, {
		desc: "set image to one that exists", old: pod("", good), cur: pod("", w.public.Ref("multi", ":v1")),
		wantAllowed: true, wantLookups: true,
	}, {
		desc: "only the container whose image changed is checked",
		old:  pod("", bad, good), cur: pod("", bad, bad2),
		wantText:    []string{`[TagNotFound] container "c1"`},
		wantAbsent:  []string{`container "c0"`},
		wantLookups: true,
	}, {
		desc: "an init container's image change is checked",
		old:  pod(good, good), cur: pod(bad, good),
		wantText:    []string{`[ImageNotFound] container "init"`},
		wantAbsent:  []string{`container "c0"`},
		wantLookups: true,
	}, {
		desc: "a changed private image is looked up with the pod's pull secrets",
		old:  withSecret(pod("", good)), cur: withSecret(pod("", private)),
		wantAllowed: true, wantLookups: true,
	}, {
		desc: "a changed private image without pull secrets",
		old:  pod("", good), cur: pod("", private),
		wantText:    []string{`[NoCredentials] container "c0"`},
		wantLookups: true,
	}, {
		desc: "a label change of a pod whose image is bad is not looked up",
		old:  pod("", bad), cur: labelled(pod("", bad)),
		wantAllowed: true,
	}, {
		desc: "the pod's unchanged image volume is not looked up again",
		old:  withImageVolume(pod("", good), bad), cur: withImageVolume(pod("", w.public.Ref("multi", ":v1")), bad),
		wantAllowed: true, wantLookups: true,
	}, {
		desc: "a status update is not looked up",
		old:  pod("", good), cur: pod("", bad), subResource: "status",
		wantAllowed: true,
	}, {
		desc: "kubectl debug does not look up the pod's image volumes again",
		old:  withImageVolume(pod("", good), bad),
		cur: func() *corev1.Pod {
			p := withImageVolume(pod("", good), bad)
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: good, VolumeMounts: []corev1.VolumeMount{{Name: "models", MountPath: "/models"}}}}}
			return p
		}(),
		subResource: "ephemeralcontainers",
		wantAllowed: true, wantLookups: true,
	}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			v := w.validator(basePolicy()) // a cache of its own: look-ups are counted
			w.public.Reset()
			w.private.Reset()
			req := request(t, admissionv1.Update, podKind, testNS, tc.cur, tc.old)
			req.SubResource = tc.subResource
			resp := v.Handle(t.Context(), req)
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v (%s; warnings %q)", resp.Allowed, tc.wantAllowed, resp.Result.Message, resp.Warnings)
			}
			msg := resp.Result.Message
			for _, want := range tc.wantText {
				if !strings.Contains(msg, want) {
					t.Errorf("denial lacks %q:\n%s", want, msg)
				}
			}
			for _, absent := range tc.wantAbsent {
				if strings.Contains(msg, absent) {
					t.Errorf("denial names %s, whose image did not change:\n%s", absent, msg)
				}
			}
			n := w.public.TotalRequests() + w.private.TotalRequests()
			if tc.wantLookups != (n > 0) {
				t.Errorf("%d registry requests; want look-ups: %v", n, tc.wantLookups)
			}
		})
	}
}
