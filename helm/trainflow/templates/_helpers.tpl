{{/* Labels on every object of the chart. */}}
{{- define "trainflow.labels" -}}
app.kubernetes.io/name: trainflow
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/part-of: trainflow
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* The existing Secret's name: only a reference, its values never pass through the chart. */}}
{{- define "trainflow.secretName" -}}
{{- required "existingSecret: name the existing Secret holding PGPASSWORD (helm/README.md says how to create it)" .Values.existingSecret -}}
{{- end -}}
