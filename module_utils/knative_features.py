"""Which Knative feature flags (ConfigMap knative-serving/config-features) InferenceServices need.

In Serverless mode KServe turns each component of an InferenceService (predictor, transformer, explainer)
into a Knative Service whose pod template carries the component's pod-level fields. Knative's webhook
rejects a Knative Service that sets a pod field behind a feature flag while the flag is "disabled" (the
release default), e.g. `must not set the field(s): spec.template.spec.nodeSelector`, so KServe cannot
create it and the InferenceService never gets Ready. The flags of Knative Serving 1.16 (config-features):
"""

FLAGS_BY_POD_FIELD = {
    "affinity": "kubernetes.podspec-affinity",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "tolerations": "kubernetes.podspec-tolerations",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
    "securityContext": "kubernetes.podspec-securitycontext",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "hostIPC": "kubernetes.podspec-hostipc",
    "hostPID": "kubernetes.podspec-hostpid",
    "hostNetwork": "kubernetes.podspec-hostnetwork",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
}
COMPONENTS = ("predictor", "transformer", "explainer")
# Values under which Knative's webhook accepts the field ("allowed": accepted, not defaulted on).
ACCEPTING = ("enabled", "allowed")
VALUES = ("enabled", "disabled", "allowed")
ENABLED = "enabled"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
NO_KNATIVE_MODES = ("RawDeployment", "Standard", "ModelMesh")  # Standard: KServe 0.16's RawDeployment


def _uses_knative(isvc):
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DEPLOYMENT_MODE_ANNOTATION) not in NO_KNATIVE_MODES


def _is_set(value):
    return value not in (None, "", [], {}, False)


def flags_needed(inference_services):
    """{flag: [namespace/name of each InferenceService that needs it]} over the given InferenceService
    manifests, sorted; empty when none needs a flag. RawDeployment ones need none (no Knative)."""
    needed = {}
    for isvc in inference_services:
        if not _uses_knative(isvc):
            continue
        metadata = isvc.get("metadata") or {}
        who = f"{metadata.get('namespace') or 'default'}/{metadata.get('name')}"
        spec = isvc.get("spec") or {}
        for component in COMPONENTS:
            for field, value in (spec.get(component) or {}).items():
                flag = FLAGS_BY_POD_FIELD.get(field)
                if flag and _is_set(value) and who not in needed.setdefault(flag, []):
                    needed[flag].append(who)
    return {flag: needed[flag] for flag in sorted(needed)}


def features_data(needed, live_data=None):
    """The config-features data to apply for the `needed` flags: "enabled", or the live value when it
    already accepts the field ("allowed" set by someone else stays as it is: no conflicting owner)."""
    live = live_data or {}
    return {flag: live[flag] if live.get(flag) in ACCEPTING else ENABLED for flag in sorted(needed)}


def invalid_values(features):
    """The entries of a config-features dict whose value Knative does not accept (it wants strings)."""
    return {flag: value for flag, value in (features or {}).items() if value not in VALUES}
