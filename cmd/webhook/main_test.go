package main

import (
	"strings"
	"testing"
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
