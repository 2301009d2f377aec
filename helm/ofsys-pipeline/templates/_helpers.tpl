{{/*
The chart name, or nameOverride; truncated to 63 characters (a DNS label).
*/}}
{{- define "ofsys-pipeline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every resource: fullnameOverride, or <release>-<name> (just the
release name when it already contains the chart name); truncated to 63 characters
because some Kubernetes name fields are limited to that (DNS label).
*/}}
{{- define "ofsys-pipeline.fullname" -}}
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

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "ofsys-pipeline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource: the selector labels plus chart, version and manager.
*/}}
{{- define "ofsys-pipeline.labels" -}}
helm.sh/chart: {{ include "ofsys-pipeline.chart" . }}
{{ include "ofsys-pipeline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ofsys
{{- end }}

{{/*
Selector labels: name and instance. They select pods and Services, so they never
change between chart versions (a Deployment's selector is immutable).
*/}}
{{- define "ofsys-pipeline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ofsys-pipeline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the pods run as.
*/}}
{{- define "ofsys-pipeline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ofsys-pipeline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest when image.digest is set, else repository:tag
(the chart's appVersion by default).
*/}}
{{- define "ofsys-pipeline.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
"true" when an optional kind from a CRD is rendered; called with (list <enabled>
<apiVersion> $). true: always; false: never; auto: when the cluster serves apiVersion.
helm install and upgrade ask the cluster; helm template knows only the built-in API
versions and those given with --api-versions, so auto leaves the kind out there.
*/}}
{{- define "ofsys-pipeline.wanted" -}}
{{- $enabled := index . 0 }}
{{- if eq (toString $enabled) "auto" }}
{{- if (index . 2).Capabilities.APIVersions.Has (index . 1) }}true{{ end }}
{{- else if $enabled }}true{{ end }}
{{- end }}

{{/*
"true" when the ServiceMonitor is rendered (serviceMonitor.enabled).
*/}}
{{- define "ofsys-pipeline.serviceMonitor" -}}
{{- include "ofsys-pipeline.wanted" (list .Values.serviceMonitor.enabled "monitoring.coreos.com/v1" .) }}
{{- end }}

{{/*
"true" when the PrometheusRule is rendered (prometheusRule.enabled).
*/}}
{{- define "ofsys-pipeline.prometheusRule" -}}
{{- include "ofsys-pipeline.wanted" (list .Values.prometheusRule.enabled "monitoring.coreos.com/v1" .) }}
{{- end }}

{{/*
"true" when KEDA scales the Deployment (autoscaling.keda.enabled).
*/}}
{{- define "ofsys-pipeline.keda" -}}
{{- include "ofsys-pipeline.wanted" (list .Values.autoscaling.keda.enabled "keda.sh/v1alpha1" .) }}
{{- end }}

{{/*
Name of the chart's own Secret (account key, SASL password).
*/}}
{{- define "ofsys-pipeline.secretName" -}}
{{- printf "%s-secret" (include "ofsys-pipeline.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Secret and key holding the Journey account key: existingSecret, or the chart's Secret
when accountKey is set. Empty when neither is: the pod then reports the missing key.
*/}}
{{- define "ofsys-pipeline.accountKeyRef" -}}
{{- if .Values.journey.existingSecret }}
name: {{ .Values.journey.existingSecret }}
key: {{ .Values.journey.existingSecretKey }}
{{- else if .Values.journey.accountKey }}
name: {{ include "ofsys-pipeline.secretName" . }}
key: account-key
{{- end }}
{{- end }}

{{/*
True ("true") when the Kafka security protocol uses SASL.
*/}}
{{- define "ofsys-pipeline.kafkaSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{/*
True ("true") when the Kafka security protocol uses TLS.
*/}}
{{- define "ofsys-pipeline.kafkaTls" -}}
{{- if hasSuffix "SSL" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{/*
Secret and key holding the SASL password: existingSecret, or the chart's Secret.
*/}}
{{- define "ofsys-pipeline.saslPasswordRef" -}}
{{- if .Values.kafka.sasl.existingSecret }}
name: {{ .Values.kafka.sasl.existingSecret }}
key: {{ .Values.kafka.sasl.existingSecretKey }}
{{- else }}
name: {{ include "ofsys-pipeline.secretName" . }}
key: kafka-sasl-password
{{- end }}
{{- end }}

{{/*
Where the Kafka TLS Secret is mounted (read-only).
*/}}
{{- define "ofsys-pipeline.tlsMountPath" -}}
/etc/ofsys/kafka-tls
{{- end }}

{{/*
The autoscalers' maximum: autoscaling.maxReplicas, or the partition count when 0.
*/}}
{{- define "ofsys-pipeline.maxReplicas" -}}
{{- if .Values.autoscaling.maxReplicas }}
{{- .Values.autoscaling.maxReplicas | int }}
{{- else }}
{{- .Values.kafka.topicPartitions | int }}
{{- end }}
{{- end }}

{{/*
Scale-down behaviour shared by KEDA and the HPA: one pod at a time after a
stabilization window, because every scale step rebalances the consumer group.
*/}}
{{- define "ofsys-pipeline.scaleBehavior" -}}
scaleDown:
  stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDownStabilizationSeconds }}
  policies:
    - type: Pods
      value: 1
      periodSeconds: 60
scaleUp:
  stabilizationWindowSeconds: 0
  policies:
    - type: Pods
      value: 4
      periodSeconds: 60
{{- end }}

{{/*
Checks that refuse a release that cannot work, each with a message naming the values
to change. Included by the Deployment, so every render runs them.
*/}}
{{- define "ofsys-pipeline.validate" -}}
{{- $partitions := .Values.kafka.topicPartitions | int }}
{{- $keda := include "ofsys-pipeline.keda" . }}
{{- $hpa := .Values.autoscaling.hpa.enabled }}
{{- if and $keda $hpa }}
{{- fail "autoscaling.keda.enabled and autoscaling.hpa.enabled are both true: enable at most one autoscaler (two would fight over the Deployment's replicas)" }}
{{- end }}
{{- if gt (.Values.replicaCount | int) $partitions }}
{{- fail (printf "replicaCount (%d) exceeds kafka.topicPartitions (%d): one partition is read by at most one consumer-group member, so the extra pods would sit idle. Lower replicaCount or add partitions to the topic (see docs/deploy.md, Scale)" (.Values.replicaCount | int) $partitions) }}
{{- end }}
{{- if or $keda $hpa }}
{{- $max := include "ofsys-pipeline.maxReplicas" . | int }}
{{- if gt $max $partitions }}
{{- fail (printf "autoscaling.maxReplicas (%d) exceeds kafka.topicPartitions (%d): one partition is read by at most one consumer-group member, so the extra pods would sit idle. Lower autoscaling.maxReplicas (0 means the partition count)" $max $partitions) }}
{{- end }}
{{- if gt (.Values.autoscaling.minReplicas | int) $max }}
{{- fail (printf "autoscaling.minReplicas (%d) exceeds the autoscalers' maximum (%d)" (.Values.autoscaling.minReplicas | int) $max) }}
{{- end }}
{{- if and $hpa (lt (.Values.autoscaling.minReplicas | int) 1) }}
{{- fail "autoscaling.minReplicas must be at least 1 with the HPA (scaling to zero needs KEDA)" }}
{{- end }}
{{- end }}
{{- if and (not (kindIs "invalid" .Values.terminationGracePeriodSeconds)) (le (float64 .Values.terminationGracePeriodSeconds) (float64 .Values.pipeline.shutdownTimeoutSeconds)) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be greater than pipeline.shutdownTimeoutSeconds (%v): Kubernetes would kill the pipeline before it has drained and committed" .Values.terminationGracePeriodSeconds .Values.pipeline.shutdownTimeoutSeconds) }}
{{- end }}
{{- if and .Values.journey.accountKey (not (regexMatch "^[A-Za-z0-9]{32}$" .Values.journey.accountKey)) }}
{{- fail (printf "journey.accountKey must be exactly 32 letters and digits (got %d characters; value withheld)" (len .Values.journey.accountKey)) }}
{{- end }}
{{- if and .Values.journey.accountKey .Values.journey.existingSecret }}
{{- fail "set either journey.accountKey or journey.existingSecret, not both" }}
{{- end }}
{{- if include "ofsys-pipeline.kafkaSasl" . }}
{{- if not .Values.kafka.sasl.username }}
{{- fail (printf "kafka.securityProtocol is %s: set kafka.sasl.username" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if not (or .Values.kafka.sasl.password .Values.kafka.sasl.existingSecret) }}
{{- fail (printf "kafka.securityProtocol is %s: set kafka.sasl.existingSecret (or kafka.sasl.password)" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if and .Values.kafka.sasl.password .Values.kafka.sasl.existingSecret }}
{{- fail "set either kafka.sasl.password or kafka.sasl.existingSecret, not both" }}
{{- end }}
{{- end }}
{{- if and (not (include "ofsys-pipeline.kafkaTls" .)) .Values.kafka.tls.existingSecret }}
{{- fail (printf "kafka.tls.existingSecret is set but kafka.securityProtocol is %s: use SSL or SASL_SSL" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if and .Values.kafka.tls.existingSecret (not (or .Values.kafka.tls.caKey .Values.kafka.tls.certKey)) }}
{{- fail "kafka.tls.existingSecret is set: name the CA certificate (kafka.tls.caKey) and/or the client certificate (kafka.tls.certKey) in it" }}
{{- end }}
{{- if ne (empty .Values.kafka.tls.certKey) (empty .Values.kafka.tls.keyKey) }}
{{- fail "mutual TLS needs both kafka.tls.certKey and kafka.tls.keyKey" }}
{{- end }}
{{- if and .Values.kafka.tls.certKey (not .Values.kafka.tls.existingSecret) }}
{{- fail "kafka.tls.certKey is set: name the Secret holding it in kafka.tls.existingSecret" }}
{{- end }}
{{- range $property, $_ := .Values.kafka.extraConfig }}
{{- if regexMatch "password|secret|sasl\\.username|bootstrap\\.servers|security\\.protocol|sasl\\.mechanism|ssl\\.(ca|certificate|key)\\." $property }}
{{- fail (printf "kafka.extraConfig.%s: secrets never go into the ConfigMap, and this property has its own value (kafka.sasl.*, kafka.tls.*, kafka.bootstrapServers or kafka.securityProtocol)" $property) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Seconds between SIGTERM and SIGKILL: the explicit override, else derived from the
pipeline's shutdown deadline with a margin, so the two cannot drift apart.
*/}}
{{- define "ofsys-pipeline.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (ceil (float64 .Values.pipeline.shutdownTimeoutSeconds) | int) 10 -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds | int -}}
{{- end -}}
{{- end }}
