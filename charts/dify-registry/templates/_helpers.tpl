{{/* Names, labels and the pieces several templates share. */}}

{{- define "dify-registry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "dify-registry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dify-registry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dify-registry.labels" -}}
helm.sh/chart: {{ include "dify-registry.chart" . }}
{{ include "dify-registry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dify-registry
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "dify-registry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dify-registry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "registry"). */}}
{{- define "dify-registry.componentLabels" -}}
{{ include "dify-registry.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dify-registry.componentSelectorLabels" -}}
{{ include "dify-registry.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dify-registry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dify-registry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag or repository@digest; the tag defaults to the chart's appVersion. */}}
{{- define "dify-registry.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{/* The public URL: externalURL, else the first Ingress host (https when TLS covers it). */}}
{{- define "dify-registry.externalURL" -}}
{{- if .Values.externalURL -}}
{{- .Values.externalURL | trimSuffix "/" -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- $host := (first .Values.ingress.hosts).host -}}
{{- $tls := false -}}
{{- range .Values.ingress.tls -}}{{- if has $host .hosts -}}{{- $tls = true -}}{{- end -}}{{- end -}}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host -}}
{{- end -}}
{{- end -}}

{{/* The host (and port) clients use in `docker login` and image references. */}}
{{- define "dify-registry.clientHost" -}}
{{- $url := include "dify-registry.externalURL" . -}}
{{- if $url -}}
{{- regexReplaceAll "^https?://" $url "" | trimSuffix "/" -}}
{{- else -}}
{{- printf "127.0.0.1:%d" (int .Values.service.port) -}}
{{- end -}}
{{- end -}}

{{/* "true" when anything turns authentication on. */}}
{{- define "dify-registry.authEnabled" -}}
{{- $auth := .Values.config.auth | default dict -}}
{{- if or .Values.auth.htpasswd.users .Values.auth.htpasswd.existingSecret $auth.users $auth.robots $auth.htpasswd $auth.token -}}
true
{{- end -}}
{{- end -}}

{{- define "dify-registry.htpasswdEnabled" -}}
{{- if or .Values.auth.htpasswd.users .Values.auth.htpasswd.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "dify-registry.htpasswdSecretName" -}}
{{- .Values.auth.htpasswd.existingSecret | default (printf "%s-htpasswd" (include "dify-registry.fullname" .)) -}}
{{- end -}}

{{- define "dify-registry.tokenSecretName" -}}
{{- .Values.auth.issuer.existingSecret | default (printf "%s-token" (include "dify-registry.fullname" .)) -}}
{{- end -}}

{{- define "dify-registry.tokenKeyKey" -}}
{{- ternary .Values.auth.issuer.existingSecretKeyKey "tls.key" (not (empty .Values.auth.issuer.existingSecret)) -}}
{{- end -}}

{{- define "dify-registry.tokenCertificateKey" -}}
{{- ternary .Values.auth.issuer.existingSecretCertificateKey "tls.crt" (not (empty .Values.auth.issuer.existingSecret)) -}}
{{- end -}}

{{/* "true" when the registry has Redis: in the chart, external, or set directly in config.redis. */}}
{{- define "dify-registry.redisEnabled" -}}
{{- if or .Values.redis.enabled .Values.externalRedis.url .Values.externalRedis.addr .Values.config.redis -}}true{{- end -}}
{{- end -}}

{{- define "dify-registry.redisFullname" -}}
{{- printf "%s-redis" (include "dify-registry.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The Secret and key holding the Redis password, as "name/key", or nothing. */}}
{{- define "dify-registry.redisPasswordRef" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.auth.enabled -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- printf "%s/%s" .Values.redis.auth.existingSecret .Values.redis.auth.existingSecretPasswordKey -}}
{{- else -}}
{{- printf "%s/redis-password" (include "dify-registry.redisFullname" .) -}}
{{- end -}}
{{- end -}}
{{- else if .Values.externalRedis.existingSecret -}}
{{- printf "%s/%s" .Values.externalRedis.existingSecret .Values.externalRedis.existingSecretPasswordKey -}}
{{- else if .Values.externalRedis.password -}}
{{- printf "%s/redis-password" (include "dify-registry.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "dify-registry.s3SecretName" -}}
{{- .Values.storage.s3.existingSecret | default (include "dify-registry.fullname" .) -}}
{{- end -}}

{{- define "dify-registry.s3HasCredentials" -}}
{{- if and (eq .Values.storage.type "s3") (or .Values.storage.s3.existingSecret .Values.storage.s3.accesskey) -}}true{{- end -}}
{{- end -}}

{{/* The chart's own Secret holds S3 keys and the external Redis password given as values. */}}
{{- define "dify-registry.chartSecretEnabled" -}}
{{- $s3 := and (eq .Values.storage.type "s3") (not .Values.storage.s3.existingSecret) .Values.storage.s3.accesskey -}}
{{- $redis := and (not .Values.redis.enabled) (not .Values.externalRedis.existingSecret) .Values.externalRedis.password -}}
{{- if or $s3 $redis -}}true{{- end -}}
{{- end -}}

{{/* "true" when the data lives on a volume that every pod may mount at once. */}}
{{- define "dify-registry.sharedVolume" -}}
{{- if and .Values.storage.persistence.enabled (has "ReadWriteMany" .Values.storage.persistence.accessModes) -}}true{{- end -}}
{{- end -}}

{{/* The most registry pods that may run at once (replicas, or the autoscaler's maximum). */}}
{{- define "dify-registry.maxReplicas" -}}
{{- if .Values.autoscaling.enabled -}}{{ int .Values.autoscaling.maxReplicas }}{{- else -}}{{ int .Values.replicaCount }}{{- end -}}
{{- end -}}

{{/* "true" when the registry serves TLS itself (config.http.tls) rather than behind an Ingress. */}}
{{- define "dify-registry.servesTLS" -}}
{{- if dig "http" "tls" nil (.Values.config | default dict) -}}true{{- end -}}
{{- end -}}

{{/* Refuses combinations that install but cannot work. */}}
{{- define "dify-registry.validate" -}}
{{- $max := include "dify-registry.maxReplicas" . | int -}}
{{- if eq .Values.storage.type "filesystem" -}}
{{- if and (gt $max 1) (not (include "dify-registry.sharedVolume" .)) -}}
{{- fail (printf "storage.type filesystem with %d replicas needs a ReadWriteMany volume that every pod mounts; a ReadWriteOnce volume attaches to one node only. Use storage.type s3, or one replica, or a ReadWriteMany claim: storage.persistence.accessModes on a new release; an existing release cannot change its claim's access modes (Kubernetes refuses), so copy the data to a ReadWriteMany claim and name it in storage.persistence.existingClaim." $max) -}}
{{- end -}}
{{- else if eq .Values.storage.type "s3" -}}
{{- $_ := required "storage.s3.bucket is required when storage.type is s3" .Values.storage.s3.bucket -}}
{{- if and .Values.storage.s3.accesskey (not .Values.storage.s3.secretkey) -}}
{{- fail "storage.s3.accesskey and storage.s3.secretkey go together" -}}
{{- end -}}
{{- end -}}
{{- if and (gt $max 1) (not (include "dify-registry.redisEnabled" .)) -}}
{{- fail (printf "%d replicas share upload sessions, caches and locks through Redis: set redis.enabled, externalRedis.url or externalRedis.addr" $max) -}}
{{- end -}}
{{- if and .Values.redis.enabled (or .Values.externalRedis.url .Values.externalRedis.addr) -}}
{{- fail "choose one Redis: redis.enabled (in the chart) or externalRedis, not both" -}}
{{- end -}}
{{- if .Values.builder.enabled -}}
{{- if not (include "dify-registry.redisEnabled" .) -}}
{{- fail "builder.enabled needs Redis for the build queue: set redis.enabled, externalRedis.url or externalRedis.addr" -}}
{{- end -}}
{{- if and (eq .Values.storage.type "filesystem") (not (include "dify-registry.sharedVolume" .)) -}}
{{- fail "builder.enabled needs storage that the workers reach too: storage.type s3, or a ReadWriteMany volume" -}}
{{- end -}}
{{- $archs := list -}}
{{- range .Values.builder.workers -}}
{{- if has .arch $archs -}}
{{- fail (printf "builder.workers: two entries for arch %s (their Deployments and config files would have one name); give one entry more replicas or platforms" .arch) -}}
{{- end -}}
{{- $archs = append $archs .arch -}}
{{- end -}}
{{- if include "dify-registry.servesTLS" . -}}
{{- fail "builder.enabled with config.http.tls: build workers push to the registry's Service over plain HTTP; terminate TLS at the Ingress instead" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) -}}
{{- fail "ingress.enabled needs at least one entry in ingress.hosts" -}}
{{- end -}}
{{- end -}}

{{/* "true" when the configuration holds credentials that only the file can carry. */}}
{{- define "dify-registry.configInSecret" -}}
{{- $secret := .Values.configInSecret -}}
{{- $cfgMirror := .Values.config.mirror | default dict -}}
{{- range concat (.Values.mirror.upstreams | default list) ($cfgMirror.upstreams | default list) -}}
{{- if or .password .username -}}{{- $secret = true -}}{{- end -}}
{{- end -}}
{{- $proxy := .Values.config.proxy | default dict -}}
{{- $redis := .Values.config.redis | default dict -}}
{{- $s3 := dig "storage" "s3" dict .Values.config -}}
{{- if or $proxy.password $redis.password (dig "sentinel" "password" "" $redis) $s3.secretkey -}}{{- $secret = true -}}{{- end -}}
{{- /* A password in any URL (redis://:pw@, a build argument's https://user:token@): wherever it is written. */ -}}
{{- range list (toYaml (.Values.config | default dict)) (toYaml (.Values.builder.config | default dict)) -}}
{{- if regexMatch "[A-Za-z][A-Za-z0-9+.-]*://[^/@\\s]*:[^/@\\s]*@" . -}}{{- $secret = true -}}{{- end -}}
{{- end -}}
{{- range dig "notifications" "endpoints" list .Values.config -}}
{{- if .headers -}}{{- $secret = true -}}{{- end -}}
{{- end -}}
{{- if $secret -}}true{{- end -}}
{{- end -}}

{{- define "dify-registry.configName" -}}
{{- printf "%s-config" (include "dify-registry.fullname" .) -}}
{{- end -}}

{{/*
The registry's configuration as a dict: config values first, then what the chart wires from the other
values (listen address, storage, Redis, auth files, metrics, mirror), which wins. Credentials stay out:
they come as REGISTRY_* environment variables from Secrets (see dify-registry.secretEnv).
*/}}
{{- define "dify-registry.registryConfig" -}}
{{- $v := .Values -}}
{{- $wired := dict "version" "0.1" -}}
{{- $http := dict "addr" (printf ":%d" (int $v.service.containerPort)) -}}
{{- with (include "dify-registry.externalURL" .) }}{{ $_ := set $http "host" . }}{{ end -}}
{{- if $v.metrics.enabled -}}
{{- /* Metrics on their own port only, so an Ingress in front of the main port never exposes them. */ -}}
{{- $_ := set $http "debug" (dict "addr" (printf ":%d" (int $v.metrics.port)) "prometheus" (dict "enabled" true "path" $v.metrics.path)) -}}
{{- $_ := set $http "metrics" (dict "enabled" false) -}}
{{- end -}}
{{- $_ := set $wired "http" $http -}}
{{- $storage := dict "redirect" (dict "disable" $v.storage.redirect.disable) -}}
{{- if eq $v.storage.type "s3" -}}
{{- $s3 := dict "bucket" $v.storage.s3.bucket "region" $v.storage.s3.region "forcepathstyle" $v.storage.s3.forcepathstyle "encrypt" $v.storage.s3.encrypt "chunksize" $v.storage.s3.chunksize "checksummode" $v.storage.s3.checksummode "uploadconcurrency" $v.storage.s3.uploadconcurrency -}}
{{- range $key := list "regionendpoint" "rootdirectory" "storageclass" -}}
{{- with index $v.storage.s3 $key }}{{ $_ := set $s3 $key . }}{{ end -}}
{{- end -}}
{{- $_ := set $storage "s3" $s3 -}}
{{- else -}}
{{- $_ := set $storage "filesystem" (dict "rootdirectory" $v.storage.filesystem.rootdirectory) -}}
{{- end -}}
{{- $_ := set $wired "storage" $storage -}}
{{- if $v.storage.redirect.baseurl -}}
{{- $_ := set $wired "middleware" (dict "storage" (list (dict "name" "redirect" "options" (dict "baseurl" $v.storage.redirect.baseurl)))) -}}
{{- end -}}
{{- if $v.redis.enabled -}}
{{- $_ := set $wired "redis" (dict "addr" (printf "%s:6379" (include "dify-registry.redisFullname" .)) "db" 0) -}}
{{- else if or $v.externalRedis.url $v.externalRedis.addr -}}
{{- $redis := dict "keyprefix" $v.externalRedis.keyprefix -}}
{{- /* A URL carries its own /db. */ -}}
{{- if $v.externalRedis.url }}{{ $_ := set $redis "url" $v.externalRedis.url }}{{ else }}{{ $_ := merge $redis (dict "addr" $v.externalRedis.addr "db" $v.externalRedis.db) }}{{ end -}}
{{- $_ := set $wired "redis" $redis -}}
{{- end -}}
{{- if include "dify-registry.authEnabled" . -}}
{{- $auth := dict "issuer" (dict "algorithm" $v.auth.issuer.algorithm "expiration" $v.auth.issuer.expiration "keys" (list (dict "key" "/etc/dify-registry/token/token.key" "certificate" "/etc/dify-registry/token/token.crt"))) -}}
{{- if include "dify-registry.htpasswdEnabled" . -}}
{{- $_ := set $auth "htpasswd" (dict "path" "/etc/dify-registry/htpasswd/htpasswd") -}}
{{- end -}}
{{- $_ := set $wired "auth" $auth -}}
{{- end -}}
{{- $mirror := dict -}}
{{- range $key := list "upstreams" "sync" "pullthrough" -}}
{{- with index $v.mirror $key }}{{ $_ := set $mirror $key . }}{{ end -}}
{{- end -}}
{{- if $mirror }}{{ $_ := set $wired "mirror" $mirror }}{{ end -}}
{{- if $v.builder.enabled -}}
{{- /* The registry accepts and assembles builds; the worker Deployments build every platform. */ -}}
{{- $_ := set $wired "builder" (mergeOverwrite (deepCopy ($v.builder.config | default dict)) (dict "enabled" true "platforms" list)) -}}
{{- end -}}
{{- toYaml (mergeOverwrite (deepCopy ($v.config | default dict)) $wired) -}}
{{- end -}}

{{/* A build worker's configuration: the registry's plus builder.* for its platforms. (dict "root" $ "worker" $w) */}}
{{- define "dify-registry.workerConfig" -}}
{{- $root := .root -}}
{{- $cfg := include "dify-registry.registryConfig" $root | fromYaml -}}
{{- $registry := printf "http://%s.%s.svc:%d" (include "dify-registry.fullname" $root) $root.Release.Namespace (int $root.Values.service.port) -}}
{{- $builder := dict "platforms" .worker.platforms "registry" $registry "cachedir" "/var/lib/dify-registry/builder" -}}
{{- $_ := set $cfg "builder" (mergeOverwrite (deepCopy ($root.Values.builder.config | default dict)) $builder) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Credentials as REGISTRY_* variables from Secrets, so the configuration itself holds none. */}}
{{- define "dify-registry.secretEnv" -}}
{{- if include "dify-registry.s3HasCredentials" . }}
- name: REGISTRY_STORAGE_S3_ACCESSKEY
  valueFrom:
    secretKeyRef:
      name: {{ include "dify-registry.s3SecretName" . }}
      key: {{ ternary .Values.storage.s3.existingSecretAccessKeyKey "s3-accesskey" (not (empty .Values.storage.s3.existingSecret)) }}
- name: REGISTRY_STORAGE_S3_SECRETKEY
  valueFrom:
    secretKeyRef:
      name: {{ include "dify-registry.s3SecretName" . }}
      key: {{ ternary .Values.storage.s3.existingSecretSecretKeyKey "s3-secretkey" (not (empty .Values.storage.s3.existingSecret)) }}
{{- end }}
{{- with include "dify-registry.redisPasswordRef" . }}
{{- $ref := splitList "/" . }}
- name: REGISTRY_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ first $ref }}
      key: {{ last $ref }}
{{- end }}
{{- end -}}

{{/*
Checksums that roll the pods when what they read changes: the rendered configuration, and the values
behind every Secret they mount or read (not generated keys, which stay the same across upgrades).
*/}}
{{- define "dify-registry.checksums" -}}
checksum/config: {{ include "dify-registry.registryConfig" . | sha256sum }}
checksum/secrets: {{ toJson (list .Values.storage.s3 .Values.externalRedis .Values.redis.auth .Values.auth .Values.configInSecret) | sha256sum }}
{{- end -}}

{{/* Volumes every registry and worker pod mounts: config, auth files, /tmp. */}}
{{- define "dify-registry.commonVolumes" -}}
- name: config
  {{- if include "dify-registry.configInSecret" . }}
  secret:
    secretName: {{ include "dify-registry.configName" . }}
  {{- else }}
  configMap:
    name: {{ include "dify-registry.configName" . }}
  {{- end }}
- name: tmp
  emptyDir: {}
{{- if include "dify-registry.authEnabled" . }}
- name: token
  secret:
    secretName: {{ include "dify-registry.tokenSecretName" . }}
    items:
      - key: {{ include "dify-registry.tokenKeyKey" . }}
        path: token.key
      - key: {{ include "dify-registry.tokenCertificateKey" . }}
        path: token.crt
{{- end }}
{{- if include "dify-registry.htpasswdEnabled" . }}
- name: htpasswd
  secret:
    secretName: {{ include "dify-registry.htpasswdSecretName" . }}
    items:
      - key: {{ ternary .Values.auth.htpasswd.existingSecretKey "htpasswd" (not (empty .Values.auth.htpasswd.existingSecret)) }}
        path: htpasswd
{{- end }}
{{- end -}}

{{- define "dify-registry.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "dify-registry.authEnabled" . }}
- name: token
  mountPath: /etc/dify-registry/token
  readOnly: true
{{- end }}
{{- if include "dify-registry.htpasswdEnabled" . }}
- name: htpasswd
  mountPath: /etc/dify-registry/htpasswd
  readOnly: true
{{- end }}
{{- end -}}

{{/* The data volume for filesystem storage: the claim, or an emptyDir without persistence. */}}
{{- define "dify-registry.dataVolume" -}}
{{- if eq .Values.storage.type "filesystem" }}
- name: data
  {{- if .Values.storage.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.storage.persistence.existingClaim | default (printf "%s-data" (include "dify-registry.fullname" .)) }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Egress, when restricted: DNS, the registry (workers push to it), the in-chart Redis, and the rules given. */}}
{{- define "dify-registry.networkPolicyEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- to:
    - podSelector:
        matchLabels:
          {{- include "dify-registry.componentSelectorLabels" (dict "root" . "component" "registry") | nindent 10 }}
  ports:
    # A NetworkPolicy sees the pod's port, not the Service's.
    - port: {{ int .Values.service.containerPort }}
      protocol: TCP
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "dify-registry.componentSelectorLabels" (dict "root" . "component" "redis") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- end }}
{{- with .Values.networkPolicy.egress }}
{{ toYaml . }}
{{- end }}
{{- end }}
