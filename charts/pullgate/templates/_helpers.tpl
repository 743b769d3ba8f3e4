{{/*
Names. The release is "pullgate" in the documented install, so every object is called
"pullgate" or "pullgate-<something>".
*/}}
{{- define "pullgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pullgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pullgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "pullgate.labels" -}}
helm.sh/chart: {{ include "pullgate.chart" . }}
{{ include "pullgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: pullgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the webhook's pods (Deployment, Service, PDB, topology spread). */}}
{{- define "pullgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pullgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "pullgate.serviceAccountName" -}}
{{- default (include "pullgate.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The policy ConfigMap, watched by the webhook (--policy-configmap). */}}
{{- define "pullgate.policyConfigMapName" -}}
{{- printf "%s-policy" (include "pullgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret with tls.crt and tls.key that the webhook serves with. */}}
{{- define "pullgate.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "pullgate.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* The serving Certificate; cert-manager's cainjector copies its CA into the webhook
configurations (cert-manager.io/inject-ca-from: <namespace>/<this name>). */}}
{{- define "pullgate.certificateName" -}}
{{- printf "%s-serving" (include "pullgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pullgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the serving certificate is mounted: the webhook's --cert-dir. */}}
{{- define "pullgate.certDir" -}}
/var/run/pullgate/tls
{{- end }}

{{/* A policy mode. An unquoted off in values is YAML 1.1's false: it renders as "off". */}}
{{- define "pullgate.mode" -}}
{{- if eq (toString .) "false" }}off{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/*
pullgate.durationSeconds turns a Go duration string ("5s", "1m30s", "2.5s", "500ms") into a
number of seconds (printed as a float). Anything else fails the render.
*/}}
{{- define "pullgate.durationSeconds" -}}
{{- $d := toString . }}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" $d) }}
{{- fail (printf "policy.lookupTimeout: %q is not a duration such as \"5s\" or \"1m30s\"" $d) }}
{{- end }}
{{- $factors := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" $d -1 }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" . }}
{{- $unit := trimPrefix $num . }}
{{- $total = addf $total (mulf (float64 $num) (get $factors $unit)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
pullgate.validateValues fails the render on values that would install a webhook that cannot
work. It prints nothing.
*/}}
{{- define "pullgate.validateValues" -}}
{{- $lookup := float64 (include "pullgate.durationSeconds" .Values.policy.lookupTimeout) }}
{{- if le $lookup 0.0 }}
{{- fail "policy.lookupTimeout must be greater than 0" }}
{{- end }}
{{- if gt $lookup 25.0 }}
{{- fail (printf "policy.lookupTimeout %s is above pullgate's maximum of 25s (the API server gives a webhook at most 30s)" .Values.policy.lookupTimeout) }}
{{- end }}
{{- if le (float64 .Values.webhook.timeoutSeconds) $lookup }}
{{- fail (printf "webhook.timeoutSeconds (%v) must be greater than policy.lookupTimeout (%s): the API server would give up on pullgate before its registry lookups do. Raise webhook.timeoutSeconds (at most 30) or lower policy.lookupTimeout." .Values.webhook.timeoutSeconds .Values.policy.lookupTimeout) }}
{{- end }}
{{- if and (not .Values.certManager.enabled) (not .Values.webhook.caBundle) }}
{{- fail "certManager.enabled=false needs webhook.caBundle (base64 PEM of the CA that signed the certificate in the Secret tls.secretName); see the chart README, \"Without cert-manager\"" }}
{{- end }}
{{- if and (not .Values.certManager.enabled) (not .Values.tls.secretName) }}
{{- fail "certManager.enabled=false needs tls.secretName: the kubernetes.io/tls Secret (tls.crt, tls.key) you created for the webhook; see the chart README, \"Without cert-manager\"" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "serviceMonitor.enabled=true needs metrics.enabled=true" }}
{{- end }}
{{- end }}

{{/*
pullgate.namespaceSelector is the namespaceSelector of the pod and workload webhooks: every
namespace except kube-system, the release namespace, the namespaces in
webhook.excludeNamespaces and policy.exemptNamespaces, and namespaces labelled
<webhook.ignoreLabel>=true. The API server never calls pullgate for those, so a broken
pullgate can never stop the control plane or pullgate itself from starting pods.
kubernetes.io/metadata.name is set on every namespace by the API server (1.22+) and cannot
be changed by users.
*/}}
{{- define "pullgate.namespaceSelector" -}}
{{- $excluded := list "kube-system" .Release.Namespace }}
{{- range (concat .Values.webhook.excludeNamespaces .Values.policy.exemptNamespaces) }}
{{- $excluded = append $excluded . }}
{{- end }}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range ($excluded | uniq) }}
      - {{ . | quote }}
      {{- end }}
  - key: {{ .Values.webhook.ignoreLabel }}
    operator: NotIn
    values: ["true"]
{{- end }}

{{/* Annotations of both webhook configurations: where their caBundle comes from. */}}
{{- define "pullgate.webhookAnnotations" -}}
{{- if .Values.certManager.enabled }}
annotations:
  # cert-manager's cainjector keeps clientConfig.caBundle equal to the CA of this
  # Certificate's Secret, also across CA rotations.
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "pullgate.certificateName" . }}
{{- end }}
{{- end }}

{{/* clientConfig of every webhook: the Service in front of the webhook pods. */}}
{{- define "pullgate.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "pullgate.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: {{ .root.Values.service.port }}
  {{- if not .root.Values.certManager.enabled }}
  caBundle: {{ .root.Values.webhook.caBundle }}
  {{- end }}
{{- end }}

{{/* The Secret holding ca.crt, the CA bundle of the API server's client certificates
(--client-ca-file): the chart's own, issued by cert-manager, or clientAuth.caSecretName. */}}
{{- define "pullgate.clientCASecretName" -}}
{{- default (printf "%s-client-ca" (include "pullgate.fullname" .)) .Values.clientAuth.caSecretName }}
{{- end }}

{{/* Where the client CA bundle is mounted. */}}
{{- define "pullgate.clientCADir" -}}
/var/run/pullgate/client-ca
{{- end }}

{{/* The Secret (tls.crt, tls.key, ca.crt) of the client certificate cert-manager issues for
the API server to present. */}}
{{- define "pullgate.apiserverClientSecretName" -}}
{{- printf "%s-apiserver-client" (include "pullgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* pullgate.validateSecurityValues fails the render on client authentication and network
policy values that cannot work. It prints nothing. */}}
{{- define "pullgate.validateSecurityValues" -}}
{{- if and .Values.clientAuth.enabled (not .Values.clientAuth.caSecretName) (not .Values.certManager.enabled) }}
{{- fail "clientAuth.enabled=true without cert-manager needs clientAuth.caSecretName: a Secret (key ca.crt) with the CA of the API server's client certificate; see the chart README, \"Client authentication\"" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.controlPlaneCIDRs) }}
{{- fail "networkPolicy.enabled=true needs networkPolicy.controlPlaneCIDRs: the addresses the API server calls the webhook from; without them the API server could not reach pullgate" }}
{{- end }}
{{- if not (has .Values.clientAuth.unauthenticatedDetails (list "limited" "full")) }}
{{- fail (printf "clientAuth.unauthenticatedDetails %q is neither limited nor full" .Values.clientAuth.unauthenticatedDetails) }}
{{- end }}
{{- end }}
