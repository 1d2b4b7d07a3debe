{{/*
Full name of the release's objects: fullnameOverride, else the release name
when it already contains the chart name, else "<release>-meshca". Truncated to
63 characters because some fields (labels, Service names) are DNS labels.
*/}}
{{- define "meshca.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select meshca's pods; they must never change after install. */}}
{{- define "meshca.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object the chart creates. */}}
{{- define "meshca.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "meshca.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "meshca.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "meshca.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "meshca.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
DNS names of the webhook's serving certificate: webhook.names, else the names
the API server uses to reach the Service.
*/}}
{{- define "meshca.webhookNames" -}}
{{- if .Values.webhook.names -}}
{{- join "," .Values.webhook.names -}}
{{- else -}}
{{- $svc := printf "%s.%s.svc" (include "meshca.fullname" .) .Release.Namespace -}}
{{- printf "%s,%s.%s" $svc $svc .Values.clusterDomain -}}
{{- end -}}
{{- end -}}

{{/*
Arguments of `meshca serve`: one flag per daemon setting, as a YAML list
(toYaml quotes values such as cron specs and selectors where YAML needs it).
Settings whose default is "none" are left out when empty.
*/}}
{{- define "meshca.args" -}}
{{- $v := .Values -}}
{{- $a := list "serve" (printf "--namespace=%s" .Release.Namespace) -}}
{{- with $v.kubeconfig }}{{ $a = append $a (printf "--kubeconfig=%s" .) }}{{ end -}}
{{- $a = append $a (printf "--trust-domain=%s" $v.trustDomain) -}}
{{- $a = append $a (printf "--cluster-domain=%s" $v.clusterDomain) -}}
{{- $a = append $a (printf "--leaf-duration=%s" $v.leafDuration) -}}
{{- $a = append $a (printf "--key-algorithm=%s" $v.keyAlgorithm) -}}
{{- $a = append $a (printf "--audit-schedule=%s" $v.auditSchedule) -}}
{{- $a = append $a (printf "--max-issuance-rate=%v" $v.maxIssuanceRate) -}}
{{- $a = append $a (printf "--kube-api-qps=%v" $v.kubeAPI.qps) -}}
{{- $a = append $a (printf "--kube-api-burst=%v" $v.kubeAPI.burst) -}}
{{- $a = append $a (printf "--event-qps=%v" $v.eventQPS) -}}
{{- with $v.tlscontextSelector }}{{ $a = append $a (printf "--tlscontext-selector=%s" .) }}{{ end -}}
{{- $a = append $a (printf "--gateway-service-account=%s" $v.gatewayServiceAccount) -}}
{{- with $v.policy.allowedDNSSuffixes }}{{ $a = append $a (printf "--allowed-dns-suffixes=%s" (join "," .)) }}{{ end -}}
{{- $a = append $a (printf "--allow-wildcards=%t" $v.policy.allowWildcards) -}}
{{- $a = append $a (printf "--allow-ip-sans=%t" $v.policy.allowIPSANs) -}}
{{- $a = append $a (printf "--allow-cross-namespace-secrets=%t" $v.policy.allowCrossNamespaceSecrets) -}}
{{- with $v.bundleNamespaceSelector }}{{ $a = append $a (printf "--bundle-namespace-selector=%s" .) }}{{ end -}}
{{- $a = append $a (printf "--secret-cleanup=%s" $v.secretCleanup) -}}
{{- $a = append $a (printf "--restart-on-rotate=%t" $v.rbac.restartOnRotate) -}}
{{- $a = append $a (printf "--webhook-port=%v" $v.webhook.port) -}}
{{- $a = append $a (printf "--webhook-configuration=%s" $v.webhook.configurationName) -}}
{{- $a = append $a (printf "--webhook-names=%s" (include "meshca.webhookNames" .)) -}}
{{- $a = append $a (printf "--webhook-secret=%s" $v.webhook.secretName) -}}
{{- with $v.rbac.namespaces }}{{ $a = append $a (printf "--watch-namespaces=%s" (join "," .)) }}{{ end -}}
{{- $a = append $a (printf "--metrics-address=:%v" $v.metrics.port) -}}
{{- $a = append $a (printf "--health-address=:%v" $v.health.port) -}}
{{- $a = append $a (printf "--leader-elect=%t" $v.leaderElect) -}}
{{- $a = append $a (printf "--leader-election-lease-duration=%s" $v.leaderElection.leaseDuration) -}}
{{- $a = append $a (printf "--leader-election-renew-deadline=%s" $v.leaderElection.renewDeadline) -}}
{{- $a = append $a (printf "--leader-election-retry-period=%s" $v.leaderElection.retryPeriod) -}}
{{- toYaml (concat $a $v.extraArgs) -}}
{{- end -}}

{{/*
Whether this release renders the TLSContext CRD: "true" or "". With
crds.install, when the cluster has no tlscontexts.getambassador.io, or has the
one this release installed and it is still meshca's (no conversion webhook).
Any other CRD of that name is someone else's, most often Emissary-ingress's
(its CRDs convert v2 <-> v3alpha1 through a webhook), and is left alone:
rendering it would make helm fail on install, or overwrite Emissary's CRD on
upgrade. The rule is the same on install, upgrade and in NOTES.txt. lookup
returns nothing in `helm template` and client-side --dry-run, so there the
CRD renders whenever crds.install is true.
*/}}
{{- define "meshca.installCRD" -}}
{{- if .Values.crds.install -}}
{{- $live := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "tlscontexts.getambassador.io" -}}
{{- if not $live -}}
true
{{- else -}}
{{- $ann := $live.metadata.annotations | default dict -}}
{{- $ours := and (eq (get $ann "meta.helm.sh/release-name") .Release.Name) (eq (get $ann "meta.helm.sh/release-namespace") .Release.Namespace) -}}
{{- $conversion := dig "spec" "conversion" "strategy" "None" $live -}}
{{- if and $ours (ne $conversion "Webhook") -}}
true
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Who owns the TLSContext CRD found in the cluster, for NOTES.txt: the owner's
Helm release, else its app.kubernetes.io/part-of label, else "unknown".
*/}}
{{- define "meshca.crdOwner" -}}
{{- $live := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "tlscontexts.getambassador.io" -}}
{{- $ann := dig "metadata" "annotations" dict $live -}}
{{- $labels := dig "metadata" "labels" dict $live -}}
{{- if eq (dig "spec" "conversion" "strategy" "None" $live) "Webhook" -}}
{{- printf "its conversion webhook %s/%s" (dig "spec" "conversion" "webhook" "clientConfig" "service" "namespace" "?" $live) (dig "spec" "conversion" "webhook" "clientConfig" "service" "name" "?" $live) -}}
{{- else if hasKey $ann "meta.helm.sh/release-name" -}}
{{- printf "Helm release %s/%s" (get $ann "meta.helm.sh/release-namespace") (get $ann "meta.helm.sh/release-name") -}}
{{- else -}}
{{- printf "%s" (get $labels "app.kubernetes.io/part-of" | default "unknown") -}}
{{- end -}}
{{- end -}}

{{/*
Seconds in a Prometheus duration such as 2h, 7d or 1h30m (units s, m, h, d,
w), for thresholds compared with timestamps in PromQL. values.schema.json
admits only durations made of these units.
*/}}
{{- define "meshca.promSeconds" -}}
{{- $units := dict "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+[smhdw]" . -1 -}}
{{- $n := regexFind "^[0-9]+" . | atoi -}}
{{- $u := get $units (regexFind "[smhdw]$" .) -}}
{{- $total = add $total (mul $n $u) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
A PromQL series selector: the metric name, then the matchers given (a list;
empty ones dropped) and prometheusRule.selector, in braces when any.
Call with (dict "name" NAME "matchers" LIST "root" $).
*/}}
{{- define "meshca.promSeries" -}}
{{- $m := list -}}
{{- range .matchers }}{{ if . }}{{ $m = append $m . }}{{ end }}{{ end -}}
{{- with .root.Values.prometheusRule.selector }}{{ $m = append $m . }}{{ end -}}
{{- .name -}}{{- if $m }}{{ printf "{%s}" (join "," $m) }}{{ end -}}
{{- end -}}
