package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

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
		{"negative shutdown delay", config{Port: 9443, ShutdownDelay: -time.Second}, "--shutdown-delay"},
		{"re-check on", config{Port: 9443, AuditInterval: time.Minute, AuditRegistryBudget: 100}, ""},
		{"negative audit interval", config{Port: 9443, AuditInterval: -time.Minute}, "--audit-interval"},
		{"re-check without budget", config{Port: 9443, AuditInterval: time.Minute}, "--audit-registry-budget 0"},
		{"credential provider config and bin dir", config{Port: 9443, CredentialProviderConfig: "c.yaml", CredentialProviderBinDir: "/bin"}, ""},
		{"credential provider config without bin dir", config{Port: 9443, CredentialProviderConfig: "c.yaml"}, "go together"},
		{"credential provider bin dir without config", config{Port: 9443, CredentialProviderBinDir: "/bin"}, "go together"},
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

// After SIGTERM the webhook goes on answering, not ready, for the shutdown delay: the context
// that runs it ends only then. (The install e2e measures what this saves: admissions that
// failed open during rollouts.)
func TestDrainingSignalHandler(t *testing.T) {
	const delay = 300 * time.Millisecond
	ctx, draining := drainingSignalHandler(delay)
	if draining() {
		t.Fatal("draining before any signal")
	}
	sent := time.Now()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !draining() {
		if time.Now().After(deadline) {
			t.Fatal("not draining after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-ctx.Done():
		t.Fatalf("the context ended %s after SIGTERM, before the delay", time.Since(sent))
	default:
	}
	<-ctx.Done()
	if waited := time.Since(sent); waited < delay {
		t.Errorf("the context ended %s after SIGTERM, want at least %s", waited, delay)
	}
}
