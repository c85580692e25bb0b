{{/* The labels of every object: the kustomize install's, plus Helm's own. */}}
{{- define "lockstep.labels" -}}
app.kubernetes.io/part-of: lockstep
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: the same as deploy/ so a kustomize install can be taken over. */}}
{{- define "lockstep.operator.selector" -}}
app.kubernetes.io/name: lockstep
app.kubernetes.io/component: operator
{{- end }}

{{- define "lockstep.proxy.selector" -}}
app.kubernetes.io/name: lockstep
app.kubernetes.io/component: proxy
lockstep.dev/fleet: {{ .Values.proxy.fleet }}
{{- end }}

{{- define "lockstep.tag" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The restricted Pod Security Standard, for every pod and container. */}}
{{- define "lockstep.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "lockstep.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* Whole seconds of a duration written as "30s" (the chart's durations use seconds). */}}
{{- define "lockstep.seconds" -}}
{{- if not (regexMatch "^[0-9]+s$" .) -}}
{{- fail (printf "durations are written in seconds, like 30s: got %q" .) -}}
{{- end -}}
{{- trimSuffix "s" . -}}
{{- end }}
