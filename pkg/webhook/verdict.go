package webhook

import "github.com/pullgate/pullgate/pkg/validate"

// WebhookName is the name the chart gives the validating webhook, which kubectl prints in a
// denial ("admission webhook "pullgate-validate.pullgate.io" denied the request: ...").
const WebhookName = "pullgate-validate.pullgate.io"

// Verdict is what the validating webhook answers for findings about an object of kind: the
// denial message ("" when it is admitted) and the admission warnings, exactly as an admission
// would give them. kubectl pullgate check prints them as kubectl apply would.
func Verdict(kind string, findings []validate.Finding) (denial string, warnings []string) {
	resp := respond(kind, findings)
	if !resp.Allowed && resp.Result != nil {
		denial = resp.Result.Message
	}
	return denial, resp.Warnings
}
