{{/*
Names and labels, after `helm create`.
*/}}

{{- define "chartgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name, truncated at 63 characters (the DNS label limit); the
suffixed objects (-admin, -chartmuseum) truncate it further.
*/}}
{{- define "chartgate.fullname" -}}
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

{{- define "chartgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chartgate.labels" -}}
helm.sh/chart: {{ include "chartgate.chart" . }}
{{ include "chartgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: the Deployment's selector, the Services', the PDB's, and
the one the ChartMuseum NetworkPolicy admits.
*/}}
{{- define "chartgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chartgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chartgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chartgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "chartgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "chartgate.adminServiceName" -}}
{{- printf "%s-admin" (include "chartgate.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/*
Paths inside the container. Secrets are files, never environment variables:
a file is re-read on every reload, and does not show in `kubectl describe`.
*/}}
{{- define "chartgate.configDir" -}}/etc/chartgate/config{{- end }}
{{- define "chartgate.secretsDir" -}}/etc/chartgate/secrets{{- end }}
{{- define "chartgate.tlsDir" -}}/etc/chartgate/tls{{- end }}
{{- define "chartgate.clientCADir" -}}/etc/chartgate/client-ca{{- end }}
{{- define "chartgate.ociStagingDir" -}}/var/lib/chartgate/oci{{- end }}

{{/*
The file name (in the secrets directory, and the key in the chart's Secret)
of a generated or referenced account key. Secret keys may not hold '@'.
*/}}
{{- define "chartgate.accountKeyFile" -}}
{{- printf "account-%s" (. | replace "@" "_at_") }}
{{- end }}

{{/*
Every secret file the pod needs, as a list of
{file, secretName, key, generated}: generated ones live in the chart's own
Secret under the key `file`; the others in an existing Secret.
*/}}
{{- define "chartgate.secretFiles" -}}
{{- $files := list }}
{{- $own := include "chartgate.fullname" . }}
{{- $sk := .Values.issuer.signingKey.existingSecret | default dict }}
{{- if get $sk "name" }}
{{- $files = append $files (dict "file" "signing-key.pem" "secretName" $sk.name "key" (required "issuer.signingKey.existingSecret.key is required with its name" (get $sk "key")) "generated" false) }}
{{- else }}
{{- $files = append $files (dict "file" "signing-key.pem" "secretName" $own "key" "signing-key.pem" "generated" true) }}
{{- end }}
{{- if .Values.masterKey.enabled }}
{{- $mk := .Values.masterKey.existingSecret | default dict }}
{{- if get $mk "name" }}
{{- $files = append $files (dict "file" "master-key" "secretName" $mk.name "key" (required "masterKey.existingSecret.key is required with its name" (get $mk "key")) "generated" false) }}
{{- else }}
{{- $files = append $files (dict "file" "master-key" "secretName" $own "key" "master-key" "generated" true) }}
{{- end }}
{{- end }}
{{- range .Values.accounts }}
{{- $key := get . "key" | default dict }}
{{- $file := include "chartgate.accountKeyFile" .id }}
{{- $existing := get $key "existingSecret" | default dict }}
{{- if get $existing "name" }}
{{- $files = append $files (dict "file" $file "secretName" $existing.name "key" (required (printf "accounts[%s].key.existingSecret.key is required with its name" .id) (get $existing "key")) "generated" false) }}
{{- else if get $key "generate" }}
{{- $files = append $files (dict "file" $file "secretName" $own "key" $file "generated" true) }}
{{- end }}
{{- end }}
{{- if .Values.upstream.basicAuth.user }}
{{- $ba := .Values.upstream.basicAuth.existingSecret | default dict }}
{{- $files = append $files (dict "file" "chartmuseum-password" "secretName" (required "upstream.basicAuth.existingSecret.name is required with upstream.basicAuth.user" (get $ba "name")) "key" (required "upstream.basicAuth.existingSecret.key is required with upstream.basicAuth.user" (get $ba "key")) "generated" false) }}
{{- end }}
{{- if .Values.auth.sharedLimits.redisUrl }}
{{- $rp := get (.Values.auth.sharedLimits.password | default dict) "existingSecret" | default dict }}
{{- if get $rp "name" }}
{{- $files = append $files (dict "file" "redis-password" "secretName" $rp.name "key" (required "auth.sharedLimits.password.existingSecret.key is required with its name" (get $rp "key")) "generated" false) }}
{{- end }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/* True (non-empty) when the chart renders a Secret of its own. */}}
{{- define "chartgate.ownSecret" -}}
{{- range (include "chartgate.secretFiles" . | fromJsonArray) }}
{{- if .generated }}true{{ end }}
{{- end }}
{{- end }}

{{/*
ChartMuseum's address, as chartgate reaches it.
*/}}
{{- define "chartgate.upstreamURL" -}}
{{- if .Values.upstream.url }}
{{- .Values.upstream.url }}
{{- else if eq .Values.chartmuseum.mode "sidecar" }}
{{- printf "http://127.0.0.1:%d" (.Values.chartmuseum.sidecar.port | int) }}
{{- else }}
{{- $e := .Values.chartmuseum.external }}
{{- printf "http://%s.%s.svc:%d" $e.serviceName ($e.namespace | default .Release.Namespace) ($e.port | int) }}
{{- end }}
{{- end }}

{{/* The ChartMuseum pods' labels; never empty, which would select every pod. */}}
{{- define "chartgate.chartmuseumPodLabels" -}}
{{- .Values.chartmuseum.external.podLabels | default (dict "app.kubernetes.io/name" "chartmuseum") | toYaml }}
{{- end }}

{{- define "chartgate.externalNamespace" -}}
{{- .Values.chartmuseum.external.namespace | default .Release.Namespace }}
{{- end }}

{{/*
The address clients use: the Ingress host, else the Service's DNS name.
*/}}
{{- define "chartgate.publicBase" -}}
{{- if and .Values.ingress.enabled .Values.ingress.host }}
{{- $scheme := ternary "http" "https" (eq .Values.ingress.tls.mode "none") }}
{{- printf "%s://%s" $scheme .Values.ingress.host }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "chartgate.fullname" .) .Release.Namespace (.Values.service.port | int) }}
{{- end }}
{{- end }}

{{- define "chartgate.realm" -}}
{{- .Values.auth.realm | default (printf "%s%s" (include "chartgate.publicBase" .) .Values.issuer.path) }}
{{- end }}

{{- define "chartgate.service" -}}
{{- if .Values.auth.service }}
{{- .Values.auth.service }}
{{- else if and .Values.ingress.enabled .Values.ingress.host }}
{{- .Values.ingress.host }}
{{- else }}
{{- printf "%s.%s.svc:%d" (include "chartgate.fullname" .) .Release.Namespace (.Values.service.port | int) }}
{{- end }}
{{- end }}

{{/*
Sidecar storage: a claim, or an emptyDir.
*/}}
{{- define "chartgate.sidecarLocal" -}}
{{- and (eq .Values.chartmuseum.mode "sidecar") (eq .Values.chartmuseum.sidecar.storage.backend "local") }}
{{- end }}

{{- define "chartgate.claimName" -}}
{{- .Values.chartmuseum.sidecar.storage.local.persistence.existingClaim | default (printf "%s-chartmuseum" (include "chartgate.fullname" . | trunc 51 | trimSuffix "-")) }}
{{- end }}

{{/*
Refuse value combinations that would render a broken or unsafe deployment.
*/}}
{{- define "chartgate.validate" -}}
{{- if and (eq .Values.ingress.tls.mode "passthrough") (not .Values.tls.enabled) }}
{{- fail "ingress.tls.mode=passthrough needs tls.enabled=true (chartgate terminates TLS)" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with tls.crt and tls.key" }}
{{- end }}
{{- if and .Values.ingress.enabled (eq .Values.ingress.tls.mode "ingress") (not .Values.ingress.tls.secretName) }}
{{- fail "ingress.tls.mode=ingress needs ingress.tls.secretName" }}
{{- end }}
{{- if eq (include "chartgate.sidecarLocal" .) "true" }}
{{- $p := .Values.chartmuseum.sidecar.storage.local.persistence }}
{{- $many := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}
{{- if and $many (not (and $p.enabled (has "ReadWriteMany" $p.accessModes))) }}
{{- fail "chartmuseum.mode=sidecar with local storage and more than one replica needs a ReadWriteMany claim (chartmuseum.sidecar.storage.local.persistence), or a cloud storage backend: each pod would otherwise serve charts of its own" }}
{{- end }}
{{- end }}
{{- /*
A push stages its blobs on the pod that takes them, and its manifest needs
them all: replicas must share the staging volume. Service session affinity
is no substitute, since an Ingress controller picks the pod itself.
*/}}
{{- if and .Values.oci.enabled (not .Values.oci.staging.existingClaim) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "oci.enabled with more than one replica (or autoscaling) needs oci.staging.existingClaim, a ReadWriteMany claim every replica mounts: with an emptyDir each pod stages blobs of its own, and a push whose manifest reaches another pod fails. Or set replicaCount=1" }}
{{- end }}
{{- if and (not (get (.Values.issuer.signingKey.existingSecret | default dict) "name")) (not (hasPrefix "RS" .Values.issuer.algorithm)) (not (hasPrefix "PS" .Values.issuer.algorithm)) }}
{{- fail (printf "issuer.algorithm=%s needs issuer.signingKey.existingSecret: the chart generates RSA keys only" .Values.issuer.algorithm) }}
{{- end }}
{{- range .Values.accounts }}
{{- $key := get . "key" | default dict }}
{{- $n := 0 }}
{{- if get . "secretHash" }}{{ $n = add1 $n }}{{ end }}
{{- if or (get (get $key "existingSecret" | default dict) "name") (get $key "generate") }}{{ $n = add1 $n }}{{ end }}
{{- if and (ne $n 1) (not (and (eq $n 0) (get . "clientCertCN"))) }}
{{- fail (printf "accounts[%s]: give exactly one of secretHash, key.existingSecret or key.generate (or only clientCertCN)" .id) }}
{{- end }}
{{- if and (get . "clientCertCN") (not $.Values.tls.clientCA.secretName) }}
{{- fail (printf "accounts[%s].clientCertCN needs tls.clientCA.secretName" .id) }}
{{- end }}
{{- end }}
{{- /*
Trust policies: what chartgate would refuse at start, refused at render
time instead, so a bad value fails `helm upgrade` rather than the pods.
*/}}
{{- if .Values.trust }}
{{- $ids := list }}
{{- if .Values.masterKey.enabled }}{{ $ids = append $ids .Values.masterKey.accountId }}{{ end }}
{{- range .Values.accounts }}{{ $ids = append $ids .id }}{{ end }}
{{- if has "oidc" $ids }}
{{- fail "the account id \"oidc\" is reserved when trust policies exist: it is the Basic user that presents an OIDC id token. Rename the account" }}
{{- end }}
{{- $names := dict }}
{{- $sources := dict }}
{{- range $i, $t := .Values.trust }}
{{- if hasKey $names $t.name }}
{{- fail (printf "trust[%d].name: %q is used by another policy" $i $t.name) }}
{{- end }}
{{- $_ := set $names $t.name true }}
{{- $source := printf "%s|%s" (get $t "jwksUri" | default "") (get $t "caFile" | default "") }}
{{- if and (hasKey $sources $t.issuer) (ne (get $sources $t.issuer) $source) }}
{{- fail (printf "trust[%d]: policies for issuer %s must give the same jwksUri and caFile: chartgate keeps one key cache per issuer" $i $t.issuer) }}
{{- end }}
{{- $_ := set $sources $t.issuer $source }}
{{- end }}
{{- end }}
{{- end }}
