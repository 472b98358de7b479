{{- /* Helpers of the KServe InferenceServices (templates/inference/) and of the functions' model
       settings. Values: the `inference` block of values.yaml. */ -}}

{{/* The GPU model servers (on the GPU node pool, sized by the profile) and what each one speaks:
     the AIMA backend that reaches it and the path of its API under the predictor's root. */}}
{{- define "aima.inference.kinds" -}}
vision: {gpu: true, backend: openai, path: /openai/v1}
narrator: {gpu: true, backend: openai, path: /openai/v1}
transcriber: {gpu: true, backend: openai, path: /v1}
embedder: {gpu: false, backend: kserve, path: ""}
{{- end -}}

{{/* One model server's settings, resolved, as JSON: the model's own values over its profile's.
     include "aima.inference.model" (dict "root" $ "key" "vision") | fromJson
     -> enabled, key, name (the InferenceService); for an enabled one also servedModelName,
        storageUri, gpus, maxModelLen, threads, resources (with the GPU count), args (the
        profile's, then the model's), scaling (the model's over inference.scaling), host, url.
     A disabled model needs no profile. */}}
{{- define "aima.inference.model" -}}
{{- $root := .root -}}
{{- $inf := $root.Values.inference -}}
{{- $kinds := include "aima.inference.kinds" . | fromYaml -}}
{{- $kind := index $kinds .key | required (printf "inference: no model server %q (known: %s)" .key (keys $kinds | sortAlpha | join ", ")) -}}
{{- $m := index ($inf.models | default dict) .key | default dict -}}
{{- $profileName := $inf.profile | default "small" -}}
{{- $name := printf "%s-%s" (include "aima.fullname" $root) ($m.name | default .key) -}}
{{- if not (and $inf.enabled (ternary $m.enabled true (hasKey $m "enabled"))) -}}
{{- dict "enabled" false "key" .key "name" $name | toJson -}}
{{- else -}}
{{- $p := dict -}}
{{- if $kind.gpu -}}
{{- $profile := index ($inf.profiles | default dict) $profileName -}}
{{- if not $profile -}}
{{- fail (printf "inference.profile: %s has no block inference.profiles.%s (values.yaml has small and large)" $profileName $profileName) -}}
{{- $profile = dict -}}{{- /* helm lint goes on after a fail */ -}}
{{- end -}}
{{- $p = index $profile .key | default dict -}}
{{- end -}}
{{- $gpus := 0 -}}
{{- if $kind.gpu -}}
{{- $gpus = int (ternary $m.gpus $p.gpus (and (hasKey $m "gpus") (not (kindIs "invalid" $m.gpus)))) -}}
{{- if lt $gpus 1 -}}
{{- fail (printf "inference.profiles.%s.%s.gpus: a GPU model server needs at least one GPU" $profileName .key) -}}
{{- end -}}
{{- end -}}
{{- $resources := deepCopy (ternary $m.resources $p.resources (not (empty $m.resources)) | default dict) -}}
{{- if $kind.gpu -}}
{{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" $gpus) (omit ($resources.limits | default dict) "nvidia.com/gpu")) -}}
{{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" $gpus) (omit ($resources.requests | default dict) "nvidia.com/gpu")) -}}
{{- end -}}
{{- $host := printf "%s-predictor.%s.svc.%s" $name (include "aima.namespace" $root) ($inf.clusterDomain | default "cluster.local") -}}
{{- $storageUri := $m.storageUri | default $p.storageUri | default "" -}}
{{- if and $kind.gpu (not $storageUri) -}}
{{- fail (printf "inference.models.%s.storageUri: empty, and the %s profile names none" .key $profileName) -}}
{{- end -}}
{{- $served := $m.servedModelName | default $p.servedModelName | default ($m.name | default .key) -}}
{{- dict
  "enabled" true
  "key" .key
  "gpu" $kind.gpu
  "backend" $kind.backend
  "name" $name
  "servedModelName" $served
  "storageUri" $storageUri
  "gpus" $gpus
  "maxModelLen" (int ($m.maxModelLen | default $p.maxModelLen | default 0))
  "threads" (int ($m.threads | default 1))
  "resources" $resources
  "args" (concat ($p.args | default list) ($m.args | default list))
  "scaling" (merge (deepCopy ($m.scaling | default dict)) ($inf.scaling | default dict))
  "host" $host
  "url" (printf "http://%s%s" $host $kind.path)
  | toJson -}}
{{- end -}}
{{- end -}}

{{/* The environment entries (`- name: ... value: ...`) that point the functions' model tasks at the
     enabled model servers, per inference.configureFunctions. Takes the root context:
       env:
         {{- include "aima.inference.env" $ | nindent 12 }}
     Renders nothing while inference is disabled. */}}
{{- define "aima.inference.env" -}}
{{- $root := . -}}
{{- $inf := $root.Values.inference | default dict -}}
{{- if $inf.enabled -}}
{{- range $task, $use := ($inf.configureFunctions | default dict) -}}
{{- if $use -}}
{{- if kindIs "string" $use }}{{ $use = dict "model" $use }}{{ end -}}
{{- $tasks := list "speech_detector" "transcriber" "voice_embedder" "face_analyzer" "pose_estimator" "ocr" "sensitivity_scorer" "vision_describer" "text_embedder" "narrator" -}}
{{- if not (has $task $tasks) -}}
{{- fail (printf "inference.configureFunctions.%s: not an AIMA model task (aima.model_settings.ModelTask: %s)" $task (join ", " $tasks)) -}}
{{- end -}}
{{- $model := include "aima.inference.model" (dict "root" $root "key" ($use.model | required (printf "inference.configureFunctions.%s.model: which server (a key of inference.models)" $task))) | fromJson -}}
{{- if $model.enabled -}}
{{- $prefix := printf "AIMA_MODELS__%s__" (upper $task) }}
- name: {{ $prefix }}BACKEND
  value: {{ $model.backend | quote }}
- name: {{ $prefix }}ENDPOINT
  value: {{ $model.url | quote }}
- name: {{ $prefix }}MODEL
  value: {{ $model.servedModelName | quote }}
{{- with $use.timeoutSeconds }}
- name: {{ $prefix }}TIMEOUT_SECONDS
  value: {{ . | toString | quote }}
{{- end }}
{{- with $use.options }}
- name: {{ $prefix }}OPTIONS
  value: {{ toJson . | quote }}
{{- end }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* metadata of a model server's InferenceService: (dict "root" $ "model" $model) */}}
{{- define "aima.inference.metadata" -}}
name: {{ .model.name }}
namespace: {{ include "aima.namespace" .root }}
labels:
  {{- include "aima.labels" .root | nindent 2 }}
  app.kubernetes.io/component: model
  aima.io/model: {{ .model.key }}
annotations:
  serving.kserve.io/deploymentMode: {{ .root.Values.inference.deploymentMode | default "Serverless" }}
{{- end -}}

{{/* The predictor's fields every model server shares: scaling, timeout, pod labels, placement,
     service account, pod security context. (dict "root" $ "model" $model) */}}
{{- define "aima.inference.predictor" -}}
{{- $inf := .root.Values.inference -}}
{{- $scaling := .model.scaling -}}
minReplicas: {{ int $scaling.minReplicas }}
maxReplicas: {{ int (max 1 (int $scaling.maxReplicas)) }}
{{- with $scaling.scaleMetric }}
scaleMetric: {{ . }}
{{- end }}
{{- with $scaling.scaleTarget }}
scaleTarget: {{ int . }}
{{- end }}
timeout: {{ int ($inf.requestTimeoutSeconds | default 600) }}
labels:
  app.kubernetes.io/name: aima
  app.kubernetes.io/instance: {{ .root.Release.Name }}
  app.kubernetes.io/component: model
  aima.io/model: {{ .model.key }}
{{- with $scaling.scaleDownDelay }}
annotations:
  autoscaling.knative.dev/scale-down-delay: {{ . | quote }}
{{- end }}
{{- if .model.gpu }}
{{- with $inf.gpu.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $inf.gpu.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- with $inf.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ dig "runAsUser" 10001 (.root.Values.podSecurityContext | default dict) }}
  runAsGroup: {{ dig "runAsGroup" 10001 (.root.Values.podSecurityContext | default dict) }}
  fsGroup: {{ dig "fsGroup" 10001 (.root.Values.podSecurityContext | default dict) }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* A model server container's security context; third-party servers (vLLM, KServe's runtime)
     write caches under $HOME, so only AIMA's own image gets a read-only root: (dict "readOnly" bool) */}}
{{- define "aima.inference.containerSecurity" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly }}
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment of the third-party GPU servers: caches in the writable /tmp. */}}
{{- define "aima.inference.gpuEnv" -}}
- name: HOME
  value: /tmp
- name: HF_HOME
  value: /tmp/huggingface
- name: HF_HUB_OFFLINE
  value: "1"
- name: VLLM_CONFIG_ROOT
  value: /tmp/vllm
- name: VLLM_CACHE_ROOT
  value: /tmp/vllm-cache
{{- end -}}
