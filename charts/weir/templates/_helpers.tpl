{{- define "weir.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "weir.labels" -}}
app.kubernetes.io/name: weir
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: weir
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: weir
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The selector labels as `key=value,...`, for the operator's --operator-pod-labels. */}}
{{- define "weir.selectorLabelList" -}}
{{- $pairs := list -}}
{{- range $key, $value := include "weir.selectorLabels" . | fromYaml -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{- define "weir.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The rules the operator needs on jobs and their children, in the namespaces it watches. */}}
{{- define "weir.jobRules" -}}
- apiGroups: ["weir.dev"]
  resources: ["multimodaljobs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["weir.dev"]
  resources: ["multimodaljobs/status"]
  verbs: ["get", "patch"]
# Children carry blockOwnerDeletion owner references, which clusters enforcing
# OwnerReferencesPermissionEnforcement allow only with update on the owner's finalizers.
- apiGroups: ["weir.dev"]
  resources: ["multimodaljobs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "create", "patch", "delete"]
# Each job's Secret (its token and TLS identity): read, created once, never patched; deleted
# with the job's other children when ttlSecondsAfterFinished passes. No list or watch.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
