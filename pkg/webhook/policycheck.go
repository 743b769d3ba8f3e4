package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pullgate/pullgate/pkg/policy"
)

// checkPolicyConfigMap refuses a write of pullgate's own policy ConfigMap whose policy does
// not parse, so the author sees the field errors at kubectl apply. (Were the write to get
// through anyway, the watcher would keep the last good policy.)
func (v *Validator) checkPolicyConfigMap(req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(req.Object.Raw, &cm); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding ConfigMap: %w", err))
	}
	data, ok := cm.Data[policy.DataKey]
	if !ok {
		if b, found := cm.BinaryData[policy.DataKey]; found {
			data, ok = string(b), true
		}
	}
	if !ok {
		return admission.Denied(fmt.Sprintf("pullgate: the policy ConfigMap must hold the policy under data[%q]", policy.DataKey))
	}
	if _, err := policy.Parse([]byte(data)); err != nil {
		return admission.Denied(fmt.Sprintf("pullgate: invalid policy, the policy in force is unchanged: %v", err))
	}
	return admission.Allowed("")
}
