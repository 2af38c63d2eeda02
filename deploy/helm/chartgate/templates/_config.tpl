{{/*
chartgate.toml, rendered from values. The schema is chartgate's own
(src/config/raw.rs; unknown keys are refused). Strings go through toJson:
a JSON string is a valid TOML basic string. No secret is ever written here:
each is a { file = ... } under the secrets directory, mounted from a Secret.
*/}}
{{- define "chartgate.config" -}}
{{- $secrets := include "chartgate.secretsDir" . -}}
# Rendered by the chartgate Helm chart ({{ include "chartgate.chart" . }}) for
# release {{ .Release.Name }}; edit the release's values, not this file.

[listen]
addr = "0.0.0.0:8080"
admin_addr = "0.0.0.0:9090"
header_read_timeout = {{ .Values.listen.headerReadTimeout | toJson }}
read_timeout = {{ .Values.listen.readTimeout | toJson }}
write_timeout = {{ .Values.listen.writeTimeout | toJson }}
max_connections = {{ .Values.listen.maxConnections | int64 }}
shutdown_grace = {{ .Values.listen.shutdownGrace | toJson }}
{{- if .Values.listen.workerThreads }}
worker_threads = {{ .Values.listen.workerThreads | int64 }}
{{- end }}
{{- if .Values.tls.enabled }}

[tls]
addr = "0.0.0.0:8443"
cert = "{{ include "chartgate.tlsDir" . }}/tls.crt"
key = "{{ include "chartgate.tlsDir" . }}/tls.key"
handshake_timeout = {{ .Values.tls.handshakeTimeout | toJson }}
reload_interval = {{ .Values.tls.reloadInterval | toJson }}
{{- if .Values.tls.clientCA.secretName }}
client_ca = "{{ include "chartgate.clientCADir" . }}/ca.crt"
{{- end }}
{{- end }}

[upstream]
url = {{ include "chartgate.upstreamURL" . | toJson }}
connect_timeout = {{ .Values.upstream.connectTimeout | toJson }}
timeout = {{ .Values.upstream.timeout | toJson }}
max_upload_bytes = {{ .Values.upstream.maxUploadBytes | int64 }}
{{- if .Values.upstream.basicAuth.user }}
basic_auth_user = {{ .Values.upstream.basicAuth.user | toJson }}
basic_auth_password = { file = "{{ $secrets }}/chartmuseum-password" }
{{- end }}

[chartmuseum]
depth = {{ .Values.chartmuseum.depth | int64 }}
{{- if .Values.chartmuseum.contextPath }}
context_path = {{ .Values.chartmuseum.contextPath | toJson }}
{{- end }}
disable_api = {{ .Values.chartmuseum.disableApi }}
disable_delete = {{ .Values.chartmuseum.disableDelete }}
artifact_hub = {{ .Values.chartmuseum.artifactHub }}

[auth]
realm = {{ include "chartgate.realm" . | toJson }}
service = {{ include "chartgate.service" . | toJson }}
issuer = {{ .Values.auth.issuer | toJson }}
{{- if .Values.auth.audience }}
audience = {{ .Values.auth.audience | toJson }}
{{- end }}
leeway = {{ .Values.auth.leeway | toJson }}
token_cache_capacity = {{ .Values.auth.tokenCacheCapacity | int64 }}
{{- if .Values.auth.trustedKeys }}
trusted_keys = [
{{- range .Values.auth.trustedKeys }}
  { file = {{ .file | toJson }}, algorithm = {{ get . "algorithm" | default "RS256" | toJson }} },
{{- end }}
]
{{- else }}
trusted_keys = []
{{- end }}
key_refresh = {{ .Values.auth.keyRefresh | toJson }}
anonymous_pull = {{ .Values.auth.anonymousPull | toJson }}
{{- if .Values.auth.tokenHeader }}
token_header = {{ .Values.auth.tokenHeader | toJson }}
{{- end }}
credential_cache_ttl = {{ .Values.auth.credentialCacheTtl | toJson }}
credential_cache_capacity = {{ .Values.auth.credentialCacheCapacity | int64 }}
max_failures_per_account = {{ .Values.auth.maxFailuresPerAccount | int64 }}
max_failures_per_address = {{ .Values.auth.maxFailuresPerAddress | int64 }}
failure_window = {{ .Values.auth.failureWindow | toJson }}
{{- with .Values.auth.sharedLimits }}
{{- if .redisUrl }}

[auth.shared_limits]
redis_url = {{ .redisUrl | toJson }}
{{- if .keyPrefix }}
key_prefix = {{ .keyPrefix | toJson }}
{{- end }}
{{- if get (get .password "existingSecret" | default dict) "name" }}
password = { file = "{{ $secrets }}/redis-password" }
{{- end }}
{{- end }}
{{- end }}

[issuer]
path = {{ .Values.issuer.path | toJson }}
signing_key = { file = "{{ $secrets }}/signing-key.pem" }
algorithm = {{ .Values.issuer.algorithm | toJson }}
token_ttl = {{ .Values.issuer.tokenTtl | toJson }}
{{- if .Values.issuer.signingKeyExpires }}
signing_key_expires = {{ .Values.issuer.signingKeyExpires | toJson }}
{{- end }}

[log]
format = {{ .Values.log.format | toJson }}
{{- if .Values.audit.file }}

[audit]
file = {{ .Values.audit.file | toJson }}
{{- end }}
{{- if .Values.oci.enabled }}

[oci]
staging_dir = {{ include "chartgate.ociStagingDir" . | toJson }}
upload_timeout = {{ .Values.oci.uploadTimeout | toJson }}
{{- end }}
{{- if .Values.masterKey.enabled }}

# The example server's master key, as an account.
[[accounts]]
id = {{ .Values.masterKey.accountId | toJson }}
key = { file = "{{ $secrets }}/master-key" }
{{- include "chartgate.rules" .Values.masterKey.rules }}
{{- end }}
{{- range .Values.accounts }}
{{- $key := get . "key" | default dict }}

[[accounts]]
id = {{ .id | toJson }}
{{- if get . "secretHash" }}
secret_hash = {{ .secretHash | toJson }}
{{- else if or (get (get $key "existingSecret" | default dict) "name") (get $key "generate") }}
key = { file = "{{ $secrets }}/{{ include "chartgate.accountKeyFile" .id }}" }
{{- end }}
{{- if get . "clientCertCN" }}
client_cert_cn = {{ .clientCertCN | toJson }}
{{- end }}
{{- if get . "expires" }}
expires = {{ .expires | toJson }}
{{- end }}
{{- include "chartgate.rules" (get . "rules" | default list) }}
{{- end }}
{{- with .Values.publish.immutable }}

[publish]
immutable = {{ toJson . }}
{{- end }}
{{- range .Values.trust }}

[[trust]]
name = {{ .name | toJson }}
issuer = {{ .issuer | toJson }}
audience = {{ .audience | toJson }}
provider = {{ .provider | toJson }}
{{- if get . "jwksUri" }}
jwks_uri = {{ .jwksUri | toJson }}
{{- end }}
{{- if get . "caFile" }}
ca_file = {{ .caFile | toJson }}
{{- end }}
{{- if get . "maxTtl" }}
max_ttl = {{ .maxTtl | toJson }}
{{- end }}
{{- if hasKey . "singleUse" }}
single_use = {{ .singleUse | default false }}
{{- end }}
{{- /*
Each claim's value is a string, a boolean or a list of strings: toJson
writes each as valid TOML. Keys are quoted the same way; range sorts them.
*/}}
{{- $claims := list }}
{{- range $claim, $value := (get . "claims" | default dict) }}
{{- $claims = append $claims (printf "%s = %s" (toJson $claim) (toJson $value)) }}
{{- end }}
claims = { {{ join ", " $claims }} }
{{- include "chartgate.rules" (get . "rules" | default list) }}
{{- end }}
{{- end }}

{{/*
Ordered rules (of an account, the master key or a trust policy), as an
inline array of tables. `charts`, when given, limits push and delete to
those chart names; an empty list is written as such, so chartgate refuses
it rather than the chart widening it to every chart.
*/}}
{{- define "chartgate.rules" }}
rules = [
{{- range . }}
  { repos = {{ .repos | toJson }}, actions = {{ .actions | default list | toJson }}{{ if hasKey . "charts" }}, charts = {{ .charts | default list | toJson }}{{ end }} },
{{- end }}
]
{{- end }}
