{{/* Names: the release's prefix for every object ("aima" when the release is called aima). */}}
{{- define "aima.fullname" -}}
{{- if contains "aima" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-aima" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aima.namespace" -}}
{{- .Release.Namespace -}}
{{- end -}}

{{- define "aima.selectorLabels" -}}
app.kubernetes.io/name: aima
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aima.labels" -}}
{{ include "aima.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: aima
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* An image reference: include "aima.image" (dict "root" $ "family" "core") */}}
{{- define "aima.image" -}}
{{- $root := .root -}}
{{- $repository := index $root.Values.image.repositories .family | required (printf "image.repositories.%s: no repository for this image" .family) -}}
{{- printf "%s%s:%s" $root.Values.image.registry $repository (default $root.Chart.AppVersion $root.Values.image.tag) -}}
{{- end -}}

{{- define "aima.secretName" -}}
{{- default (printf "%s-secrets" (include "aima.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "aima.configName" -}}
{{- printf "%s-config" (include "aima.fullname" .) -}}
{{- end -}}

{{/* The function table (files/functions.yaml, generated from the specs) with the values' overrides
     applied, as JSON: {"functions": [...]}. An override naming no function fails the render. */}}
{{- define "aima.functions" -}}
{{- $table := .Files.Get "files/functions.yaml" | fromYaml -}}
{{- $known := list -}}
{{- range $table.functions }}{{ $known = append $known .name }}{{ end -}}
{{- range $name, $_ := .Values.functions -}}
{{- if not (has $name $known) -}}
{{- fail (printf "functions.%s: no such function; known: %s" $name (join ", " $known)) -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $table.functions -}}
{{- $o := index $.Values.functions .name | default (dict) -}}
{{- $r := .resources -}}
{{- $fn := dict
  "name" .name "image" .image "public" .public "consumes" .consumes "emits" .emits "models" .models
  "enabled" (ternary $o.enabled true (hasKey $o "enabled"))
  "minScale" (ternary $o.minScale (ternary $.Values.gateway.minScale $r.minScale .public) (hasKey $o "minScale"))
  "maxScale" (ternary $o.maxScale $r.maxScale (hasKey $o "maxScale"))
  "concurrency" (ternary $o.concurrency $r.concurrency (hasKey $o "concurrency"))
  "timeoutSeconds" (ternary $o.timeoutSeconds $r.timeoutSeconds (hasKey $o "timeoutSeconds"))
  "cpu" (ternary $o.cpu $r.cpu (hasKey $o "cpu"))
  "memory" (ternary $o.memory $r.memory (hasKey $o "memory"))
  "gpu" $r.gpu
  "threads" (ternary $o.threads $r.threads (hasKey $o "threads"))
  "env" ($o.env | default (dict)) -}}
{{- $out = append $out $fn -}}
{{- end -}}
{{- dict "functions" $out | toJson -}}
{{- end -}}

{{/* The Knative Service name of a function: include "aima.functionName" (dict "root" $ "name" "probe") */}}
{{- define "aima.functionName" -}}
{{- printf "%s-%s" (include "aima.fullname" .root) .name -}}
{{- end -}}

{{/* The container security context every AIMA container runs with. */}}
{{- define "aima.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser | default 10001 }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup | default 10001 }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Service URLs inside the cluster. */}}
{{- define "aima.gatewayUrl" -}}
{{- printf "http://%s.%s.svc.cluster.local" (include "aima.functionName" (dict "root" . "name" "api")) (include "aima.namespace" .) -}}
{{- end -}}

{{- define "aima.brokerUrl" -}}
{{- printf "%s/%s/%s" (trimSuffix "/" .Values.eventing.brokerIngress) (include "aima.namespace" .) .Values.eventing.broker.name -}}
{{- end -}}

{{/* A generated secret value, base64: the given one, else the live Secret's, else a new random one. */}}
{{- define "aima.secretValue" -}}
{{- if .given -}}{{ .given | b64enc }}{{- else if hasKey .live .key -}}{{ index .live .key }}{{- else -}}{{ randAlphaNum 40 | b64enc }}{{- end -}}
{{- end -}}

{{/* Connection settings of the bundled stores whose passwords live in the Secret (env entries). */}}
{{- define "aima.storeEnv" -}}
{{- $full := include "aima.fullname" . -}}
{{- $ns := include "aima.namespace" . -}}
{{- if .Values.bundled.postgresql.enabled }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "aima.secretName" . }}, key: POSTGRES_PASSWORD}
- name: AIMA_DATABASE_URL
  value: {{ printf "postgresql+psycopg://aima:$(POSTGRES_PASSWORD)@%s-postgresql.%s.svc.cluster.local:5432/aima" $full $ns | quote }}
{{- end }}
{{- if .Values.bundled.mongodb.enabled }}
- name: MONGO_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "aima.secretName" . }}, key: MONGO_INITDB_ROOT_PASSWORD}
- name: AIMA_DOCUMENTS_URI
  value: {{ printf "mongodb://aima:$(MONGO_PASSWORD)@%s-mongodb.%s.svc.cluster.local:27017/?authSource=admin" $full $ns | quote }}
{{- end }}
{{- end -}}
