package main

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		desc    string
		cfg     config
		wantErr string
	}{
		{"defaults", config{Port: 9443}, ""},
		{"configmap", config{Port: 9443, PolicyConfigMap: "pullgate/pullgate-policy"}, ""},
		{"port out of range", config{Port: 70000}, "--port 70000"},
		{"both policy sources", config{Port: 9443, PolicyConfigMap: "a/b", PolicyFile: "p.yaml"}, "mutually exclusive"},
		{"configmap without namespace", config{Port: 9443, PolicyConfigMap: "pullgate-policy"}, "not NAMESPACE/NAME"},
		{"configmap with extra slash", config{Port: 9443, PolicyConfigMap: "a/b/c"}, "not NAMESPACE/NAME"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestDropNonPullSecretData(t *testing.T) {
	tests := []struct {
		typ      corev1.SecretType
		keepData bool
	}{
		{corev1.SecretTypeDockerConfigJson, true},
		{corev1.SecretTypeDockercfg, true},
		{corev1.SecretTypeOpaque, false},
		{corev1.SecretTypeTLS, false},
		{corev1.SecretTypeServiceAccountToken, false},
	}
	for _, tc := range tests {
		t.Run(string(tc.typ), func(t *testing.T) {
			in := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
				Type:       tc.typ,
				Data:       map[string][]byte{"k": []byte("v")},
			}
			out, err := dropNonPullSecretData(in)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*corev1.Secret)
			if (got.Data != nil) != tc.keepData {
				t.Errorf("data kept = %v, want %v", got.Data != nil, tc.keepData)
			}
			if got.ManagedFields != nil {
				t.Error("managed fields kept")
			}
		})
	}
}
