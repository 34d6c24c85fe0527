{{/* Names and labels: the contract in docs/design.md ("Names"). */}}

{{- define "oras-cache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* R if the release name contains the chart name, else R-<chart>; 63 characters at most. */}}
{{- define "oras-cache.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* <fullname>-<suffix>, still 63 characters at most: the fullname is shortened, not the suffix. */}}
{{- define "oras-cache.child" -}}
{{- $suffix := index . 1 -}}
{{- $base := include "oras-cache.fullname" (index . 0) | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end -}}

{{- define "oras-cache.registry.name" -}}{{ include "oras-cache.child" (list . "registry") }}{{- end -}}
{{- define "oras-cache.registry.guardName" -}}{{ include "oras-cache.child" (list . "registry-guard") }}{{- end -}}
{{- define "oras-cache.retention.name" -}}{{ include "oras-cache.child" (list . "retention") }}{{- end -}}
{{- define "oras-cache.registry.httpSecret" -}}{{ include "oras-cache.child" (list . "registry-http") }}{{- end -}}
{{- define "oras-cache.webhook.name" -}}{{ include "oras-cache.child" (list . "webhook") }}{{- end -}}
{{- define "oras-cache.webhook.tlsSecretGenerated" -}}{{ include "oras-cache.child" (list . "webhook-tls") }}{{- end -}}
{{- define "oras-cache.test.name" -}}{{ include "oras-cache.child" (list . "test") }}{{- end -}}

{{/* The Secret with keys username, password, htpasswd ("" when auth is off). */}}
{{- define "oras-cache.auth.secretName" -}}
{{- if .Values.auth.enabled -}}
{{- default (include "oras-cache.child" (list . "auth")) .Values.auth.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The Secret the webhook serves TLS from (tls.crt, tls.key). */}}
{{- define "oras-cache.webhook.tlsSecret" -}}
{{- if eq .Values.webhook.tls.mode "secret" -}}
{{- .Values.webhook.tls.secret.name -}}
{{- else -}}
{{- include "oras-cache.webhook.tlsSecretGenerated" . -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped, so unique per namespace and release. */}}
{{- define "oras-cache.webhookConfiguration.name" -}}
{{- printf "%s-%s" .Release.Namespace (include "oras-cache.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "oras-cache.registry.host" -}}
{{- printf "%s.%s.svc.%s:%d" (include "oras-cache.registry.name" .) .Release.Namespace .Values.clusterDomain (int .Values.registry.service.port) -}}
{{- end -}}

{{/* DNS names of the webhook Service, all in the serving certificate. */}}
{{- define "oras-cache.webhook.dnsNames" -}}
{{- $svc := include "oras-cache.webhook.name" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) | toJson -}}
{{- end -}}

{{- define "oras-cache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "registry"). */}}
{{- define "oras-cache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oras-cache.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name | quote }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "oras-cache.labels" -}}
{{ include "oras-cache.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "oras-cache.chart" .ctx }}
{{- end -}}

{{- define "oras-cache.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "oras-cache.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The registry probe: /v2/ answers 401 when auth is on, so then use "/", distribution's own
     liveness route, which also answers 503 once its storage health check fails. */}}
{{- define "oras-cache.registry.probePath" -}}
{{- if .Values.auth.enabled -}}/{{- else -}}/v2/{{- end -}}
{{- end -}}

{{/* Port distribution listens on, on 127.0.0.1 only: the guard (sidecar/guard) owns the Service port. */}}
{{- define "oras-cache.registry.innerPort" -}}
{{- if eq (int .Values.registry.service.port) 5001 -}}5002{{- else -}}5001{{- end -}}
{{- end -}}
