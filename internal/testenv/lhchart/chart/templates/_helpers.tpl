{{- /* Namespace of every namespaced object: the release namespace unless overridden. */ -}}
{{- define "release_namespace" -}}
{{- if .Values.namespaceOverride -}}
{{- .Values.namespaceOverride -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "longhorn.labels" -}}
app.kubernetes.io/name: longhorn
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "longhorn.managerImage" -}}
{{- .Values.image.longhorn.manager.repository }}:{{ .Values.image.longhorn.manager.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- /*
Per-data-engine settings (1.10+): a map such as {v1: "2", v2: "2"} becomes the JSON
string '{"v1":"2","v2":"2"}', any other value is quoted.
*/ -}}
{{- define "longhorn.multiTypeSetting" -}}
{{- if kindIs "map" . -}}
{{- toJson . | quote -}}
{{- else -}}
{{- quote . -}}
{{- end -}}
{{- end -}}
