{{/* Chart name. */}}
{{- define "dvsigner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: the release name, plus the chart name unless already in it. */}}
{{- define "dvsigner.fullname" -}}
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

{{/* Labels shared by every resource. */}}
{{- define "dvsigner.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "dvsigner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels (without the component). */}}
{{- define "dvsigner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dvsigner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The dvsigner image. */}}
{{- define "dvsigner.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Name of a signer node's resources: (list $ operatorName). */}}
{{- define "dvsigner.signerName" -}}
{{- $root := index . 0 }}
{{- printf "%s-signer-%s" (include "dvsigner.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Hosts a signer node answers for (`http-host-allowlist`): (list $ operatorName). Loopback for
local checks, the node's Service names (how combiners and peers reach it: cluster.json's node
URLs), the headless Service names, the certificate's extra DNS names and
`signers.httpHostAllowlist`. A YAML list.
*/}}
{{- define "dvsigner.signerHosts" -}}
{{- $root := index . 0 }}
{{- $name := include "dvsigner.signerName" . }}
{{- $ns := $root.Release.Namespace }}
{{- $hosts := list "localhost" "127.0.0.1" }}
{{- range $svc := list $name (printf "%s-headless" $name) }}
{{- $hosts = concat $hosts (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) }}
{{- end }}
{{- $hosts = concat $hosts $root.Values.signers.tls.certManager.dnsNames $root.Values.signers.httpHostAllowlist }}
{{- toYaml (uniq $hosts) }}
{{- end }}

{{/* TLS Secret of a signer node: (list $ operatorName). */}}
{{- define "dvsigner.signerTlsSecret" -}}
{{- $root := index . 0 }}
{{- $op := index . 1 }}
{{- if $root.Values.signers.tls.existingSecret }}
{{- $root.Values.signers.tls.existingSecret | replace "{operator}" $op }}
{{- else }}
{{- printf "%s-tls" (include "dvsigner.signerName" (list $root $op)) }}
{{- end }}
{{- end }}

{{/* Name of the cluster-definition ConfigMap. */}}
{{- define "dvsigner.clusterConfigMap" -}}
{{- if .Values.clusterDefinition.existingConfigMap }}
{{- .Values.clusterDefinition.existingConfigMap }}
{{- else if .Values.clusterDefinition.json }}
{{- printf "%s-cluster" (include "dvsigner.fullname" .) }}
{{- else }}
{{- fail "clusterDefinition.existingConfigMap or clusterDefinition.json is required" }}
{{- end }}
{{- end }}

{{/* Combiner server TLS Secret. */}}
{{- define "dvsigner.combinerTlsSecret" -}}
{{- default (printf "%s-combiner-tls" (include "dvsigner.fullname" .)) .Values.combiner.tls.existingSecret }}
{{- end }}

{{/* Service account name. */}}
{{- define "dvsigner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dvsigner.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The `dvsigner signer` config file of one node: (list $ operator). The chart's settings first,
then `signers.config`, then the operator's own `config`.
*/}}
{{- define "dvsigner.signerConfig" -}}
{{- $root := index . 0 }}
{{- $op := index . 1 }}
{{- $s := $root.Values.signers }}
{{- $c := dict
  "listen" (printf "0.0.0.0:%d" (int $s.port))
  "data-dir" "/var/lib/dvsigner"
  "network" $root.Values.network
  "log-format" $root.Values.logFormat
  "tls-cert" "/etc/dvsigner/tls/tls.crt"
  "tls-key" "/etc/dvsigner/tls/tls.key" }}
{{- if $root.Values.metrics.enabled }}
{{- $_ := set $c "metrics-listen" (printf "0.0.0.0:%d" (int $root.Values.metrics.port)) }}
{{- end }}
{{- $_ := set $c "http-host-allowlist" (include "dvsigner.signerHosts" (list $root $op.name) | fromYamlArray) }}
{{- if $s.tls.clientAuth }}
{{- $_ := set $c "tls-client-ca" "/etc/dvsigner/tls/ca.crt" }}
{{- end }}
{{- if $s.tls.allowedClients }}
{{- $_ := set $c "tls-allowed-clients" "/etc/dvsigner/config/allowed-clients.txt" }}
{{- end }}
{{- if ne (toString $op.keystores) "false" }}
{{- $_ := set $c "keystores" "/etc/dvsigner/keystores" }}
{{- $_ := set $c "keystores-passwords" "/etc/dvsigner/passwords" }}
{{- end }}
{{- if or $op.keyConfig $s.keyConfig }}
{{- $_ := set $c "key-config" "/etc/dvsigner/key-config" }}
{{- end }}
{{- if $s.peerSync.enabled }}
{{- $_ := set $c "cluster" "/etc/dvsigner/cluster/cluster.json" }}
{{- $_ := set $c "operator" $op.name }}
{{- $_ := set $c "peer-ca" "/etc/dvsigner/tls/ca.crt" }}
{{- $_ := set $c "peer-client-cert" "/etc/dvsigner/tls/tls.crt" }}
{{- $_ := set $c "peer-client-key" "/etc/dvsigner/tls/tls.key" }}
{{- if $s.peerSync.allowedClients }}
{{- $_ := set $c "peer-allowed-clients" "/etc/dvsigner/config/peer-allowed-clients.txt" }}
{{- end }}
{{- end }}
{{- $c = mergeOverwrite $c (deepCopy (default dict $s.config)) (deepCopy (default dict $op.config)) }}
{{- toYaml $c }}
{{- end }}

{{/* The `dvsigner combiner` config file. */}}
{{- define "dvsigner.combinerConfig" -}}
{{- $cb := .Values.combiner }}
{{- $c := dict
  "cluster" "/etc/dvsigner/cluster/cluster.json"
  "network" .Values.network
  "log-format" .Values.logFormat
  "node-ca" "/etc/dvsigner/node-tls/ca.crt"
  "client-cert" "/etc/dvsigner/node-tls/tls.crt"
  "client-key" "/etc/dvsigner/node-tls/tls.key" }}
{{- if $cb.tls.enabled }}
{{- $_ := set $c "listen" (printf "%s:%d" $cb.listenAddress (int $cb.port)) }}
{{- $_ := set $c "tls-cert" "/etc/dvsigner/tls/tls.crt" }}
{{- $_ := set $c "tls-key" "/etc/dvsigner/tls/tls.key" }}
{{- else }}
{{- $_ := set $c "listen" (printf "127.0.0.1:%d" (int $cb.port)) }}
{{- $_ := set $c "insecure-http" true }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $c "metrics-listen" (printf "0.0.0.0:%d" (int $cb.metricsPort)) }}
{{- end }}
{{- $c = mergeOverwrite $c (deepCopy (default dict $cb.config)) }}
{{- toYaml $c }}
{{- end }}
