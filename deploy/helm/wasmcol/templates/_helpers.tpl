{{/* Names and labels. */}}
{{- define "wasmcol.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wasmcol.fullname" -}}
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

{{- define "wasmcol.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wasmcol.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wasmcol.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "wasmcol.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ include "wasmcol.component" . }}
{{- end }}

{{- define "wasmcol.component" -}}
{{- if eq .Values.mode "daemonset" }}agent-collector{{ else }}standalone-collector{{ end }}
{{- end }}

{{/* `mode` is required and one of three; the schema says so too, this names it when the schema is skipped. */}}
{{- define "wasmcol.mode" -}}
{{- $mode := required "mode is required: set mode to daemonset, deployment or statefulset" .Values.mode }}
{{- if not (has $mode (list "daemonset" "deployment" "statefulset")) }}
{{- fail (printf "mode %q is not one of daemonset, deployment, statefulset" $mode) }}
{{- end }}
{{- $mode }}
{{- end }}

{{- define "wasmcol.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wasmcol.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "wasmcol.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Service exists for deployment and statefulset unless turned off; for a daemonset only when asked. */}}
{{- define "wasmcol.serviceEnabled" -}}
{{- if kindIs "bool" .Values.service.enabled }}{{ .Values.service.enabled }}{{ else }}{{ ne .Values.mode "daemonset" }}{{ end }}
{{- end }}

{{/* The rendered configuration (the values' config, already merged over the defaults). */}}
{{- define "wasmcol.config" -}}
{{- toYaml .Values.config }}
{{- end }}

{{/* The pod: shared by the DaemonSet, Deployment and StatefulSet. */}}
{{- define "wasmcol.podTemplate" -}}
metadata:
  annotations:
    checksum/config: {{ include "wasmcol.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "wasmcol.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "wasmcol.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: wasmcol
      image: {{ include "wasmcol.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config
        - /conf/config.yaml
        {{- range .Values.command.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      ports:
        {{- range $name, $port := .Values.ports }}
        {{- if $port.enabled }}
        - name: {{ $name }}
          containerPort: {{ $port.containerPort }}
          protocol: {{ $port.protocol | default "TCP" }}
          {{- if and $port.hostPort (eq $.Values.mode "daemonset") }}
          hostPort: {{ $port.hostPort }}
          {{- end }}
        {{- end }}
        {{- end }}
        - name: health
          containerPort: {{ .Values.healthCheck.port }}
          protocol: TCP
      env:
        - name: MY_POD_IP
          valueFrom:
            fieldRef:
              apiVersion: v1
              fieldPath: status.podIP
        - name: K8S_NODE_NAME
          valueFrom:
            fieldRef:
              apiVersion: v1
              fieldPath: spec.nodeName
        {{- with .Values.extraEnvs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      startupProbe:
        httpGet:
          path: {{ .Values.healthCheck.path }}
          port: health
        {{- toYaml .Values.startupProbe | nindent 8 }}
      livenessProbe:
        httpGet:
          path: {{ .Values.healthCheck.path }}
          port: health
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: {{ .Values.healthCheck.path }}
          port: health
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /conf
          readOnly: true
        - name: state
          mountPath: /var/lib/wasmcol
        - name: tmp
          mountPath: /tmp
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "wasmcol.fullname" . }}
        items:
          - key: config.yaml
            path: config.yaml
    - name: state
      emptyDir:
        sizeLimit: {{ .Values.stateVolume.sizeLimit }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Checks left out, each with its reason (checkov reads these annotations). */}}
{{- define "wasmcol.checkovSkips" -}}
{{- $n := 0 }}
{{- if not .Values.image.digest }}
{{- $n = add1 $n }}
checkov.io/skip{{ $n }}: "CKV_K8S_43=No digest exists until the image built from deploy/container is pushed to a registry; set image.digest to pin it by content."
{{- if ne .Values.image.pullPolicy "Always" }}
{{- $n = add1 $n }}
checkov.io/skip{{ $n }}: "CKV_K8S_15=The tag is the chart's appVersion, a release that is never rebuilt; IfNotPresent spares the registry. Set image.digest to pin it, or pullPolicy Always."
{{- end }}
{{- end }}
{{- if eq .Values.mode "daemonset" }}
{{- $host := list }}
{{- range $name, $port := .Values.ports }}
{{- if and $port.enabled $port.hostPort }}
{{- $host = append $host (printf "%s %v" $name $port.hostPort) }}
{{- end }}
{{- end }}
{{- if $host }}
{{- $n = add1 $n }}
checkov.io/skip{{ $n }}: "CKV_K8S_26=A node agent takes OTLP on the node's address ({{ join ", " $host }}) so applications send to status.hostIP; set a port's hostPort to 0 to turn it off."
{{- end }}
{{- end }}
{{- end }}
