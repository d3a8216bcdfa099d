"""What a KServe upgrade (or downgrade) will do to the InferenceServices that are served: the preview.

Pure logic over plain object dicts, no I/O (the cluster side: `k8s_upgrade.py`). KServe's reconcile logic is
not re-implemented: the prediction compares the *data* the controller builds pods from, as it is in the
cluster now and as the target release ships it, for the parts each InferenceService actually uses:

- **its serving runtime** (a ClusterServingRuntime of the release): the runtime's pod fields (containers,
  volumes, labels, annotations, scheduling) are copied into the predictor's Knative Service / Deployment by
  the controller, so a change there gives the component a new pod template: a new Knative revision (or a
  Deployment rollout), i.e. its pods are **replaced**. A runtime the InferenceService names (`runtime`) is
  that one; an auto-selected one is the runtime of its model format whose container image the workload runs.
  With `runtimeVersion` set, the runtime's image tag is the InferenceService's, so only the repository counts.
- **inferenceservice-config**: what its keys feed is a table (`CONFIG_KEYS`) of where KServe reads them.
  Explainer images are built into the explainer's pod template (replaced). The agent (request logger, batcher)
  and storage-initializer are injected by KServe's pod webhook when a pod is **created**: running pods keep
  theirs, pods created after the upgrade (scale-up, a later revision) get the new one (reported as `later`).

The upgrade itself (CRDs, controller, webhooks) does not touch a served pod. Namespaced ServingRuntimes are
the users' and are not part of a release, so they do not change.
"""

from __future__ import annotations

import copy
import json
import re
import shlex

RUNTIME_KINDS = ("ClusterServingRuntime",)
COMPONENTS = ("predictor", "transformer", "explainer")
MODEL_CONTAINER = "kserve-container"
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"
CONFIG_MAP = ("kserve", "inferenceservice-config")
CONTROLLER = ("kserve", "kserve-controller-manager")

# ServingRuntime spec fields that choose a runtime or describe its protocol; every other field of the spec
# ends up in the pods (containers, volumes, nodeSelector, tolerations, affinity, labels, annotations, ...).
RUNTIME_SELECTION_FIELDS = frozenset(
    {
        "supportedModelFormats",
        "protocolVersions",
        "disabled",
        "multiModel",
        "grpcEndpoint",
        "grpcDataEndpoint",
        "httpDataEndpoint",
        "builtInAdapter",
        "replicas",
        "storageHelper",
        "workerSpec",
    }
)

# Where KServe reads each inferenceservice-config key for an InferenceService's pods:
# ("pod_template", uses): built into the component's pod template by the controller -> pods replaced;
# ("pod_creation", uses): injected by the pod webhook when a pod is created -> new pods only.
# `uses` says which pods use the key (see `component_uses`).
CONFIG_KEYS = {
    "explainers": ("pod_template", "explainer"),
    "logger": ("pod_creation", "logger"),
    "batcher": ("pod_creation", "batcher"),
    "agent": ("pod_creation", "agent"),
    "storageInitializer": ("pod_creation", "storage_initializer"),
}


class PlanError(Exception):
    """Input the plan cannot be made from (the message says what)."""


# --- versions and the rollback command ---------------------------------------------------------------

_VERSION_TAG = re.compile(r":v?(\d+\.\d+\.\d+)(?:@.*)?$")


def version_of_image(image):
    """`kserve/kserve-controller:v0.14.1` -> `0.14.1` ('' when the tag is not a version)."""
    match = _VERSION_TAG.search(image or "")
    return match.group(1) if match else ""


def controller_version(deployment):
    """The KServe release a kserve-controller-manager Deployment runs ('' when it cannot tell)."""
    if not deployment:
        return ""
    containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or []
    for container in containers:
        if container.get("name") == "manager" or "kserve-controller" in (container.get("image") or ""):
            return version_of_image(container.get("image"))
    return ""


# ansible-playbook options of a preview or a partial run, not of the run that returns to a version.
_DROPPED_FLAGS = frozenset({"--check", "-C", "--diff", "-D", "--step", "--syntax-check", "--list-tasks"})
_DROPPED_WITH_VALUE = frozenset({"--start-at-task"})
_EXTRA_VARS = frozenset({"-e", "--extra-vars"})
_PIN = re.compile(r"^kserve_version=\S*$")


def rollback_command(argv, previous_version):
    """The command that runs the same playbook with the same options at `previous_version`.

    `argv` is the ansible-playbook command line of this run. Preview options (--check, --diff, --step,
    --start-at-task) are dropped, an `-e kserve_version=X` of its own is dropped, and `-e
    kserve_version=<previous>` is added last (the last extra var wins over any file or JSON that sets it too).
    """
    if not previous_version:
        raise PlanError("the version to return to is not known")
    args = [str(arg) for arg in argv]
    if not args:
        raise PlanError("no command line to repeat")
    kept, index = [args[0] if "/" not in args[0] else args[0].rsplit("/", 1)[1]], 1
    while index < len(args):
        arg = args[index]
        if arg in _DROPPED_FLAGS:
            index += 1
            continue
        if arg in _DROPPED_WITH_VALUE:
            index += 2
            continue
        if arg.split("=", 1)[0] in _DROPPED_WITH_VALUE and "=" in arg:
            index += 1
            continue
        if arg in _EXTRA_VARS and index + 1 < len(args) and _PIN.match(args[index + 1].strip()):
            index += 2
            continue
        if arg.startswith("-e") and arg not in _EXTRA_VARS and _PIN.match(arg[2:].strip()):
            index += 1
            continue
        if arg.startswith("--extra-vars=") and _PIN.match(arg.split("=", 1)[1].strip()):
            index += 1
            continue
        kept.append(arg)
        index += 1
    kept += ["-e", f"kserve_version={previous_version}"]
    return shlex.join(kept)


# --- what an InferenceService uses ----------------------------------------------------------------------


def _containers(pod_spec):
    return (pod_spec or {}).get("containers") or []


def _container(pod_spec, name):
    return next((c for c in _containers(pod_spec) if c.get("name") == name), None)


def _repository(image):
    """The image without its tag or digest."""
    image = (image or "").split("@", 1)[0]
    head, _colon, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


def workload_pod_spec(workload):
    """The pod spec of a component's workload: a Knative Service (serverless) or a Deployment (raw)."""
    if not workload:
        return None
    template = (workload.get("spec") or {}).get("template") or {}
    return template.get("spec") or None


def component_uses(isvc, component, pod_spec, pods):
    """What a component of an InferenceService uses that a release can change: {runtime, model_format,
    runtime_version, image, logger, batcher, agent, storage_initializer, explainer}."""
    spec = (isvc.get("spec") or {}).get(component) or {}
    model = spec.get("model") or {}
    main = _container(pod_spec, MODEL_CONTAINER) or (_containers(pod_spec) or [None])[0] or {}
    pod_containers = {c.get("name") for pod in pods for c in (pod.get("spec") or {}).get("containers") or []}
    pod_inits = {c.get("name") for pod in pods for c in (pod.get("spec") or {}).get("initContainers") or []}
    storage_uri = (
        model.get("storageUri")
        or spec.get("storageUri")
        or any((spec.get(key) or {}).get("storageUri") for key in spec if isinstance(spec.get(key), dict))
    )
    explainer = ""
    if component == "explainer":
        explainer = next((key for key in spec if key in ("art", "alibi")), "")
    return {
        "model_format": ((model.get("modelFormat") or {}).get("name") or "") if model else "",
        "runtime": model.get("runtime") or "",
        "runtime_version": model.get("runtimeVersion") or "",
        "image": main.get("image") or "",
        "logger": bool(spec.get("logger")),
        "batcher": bool(spec.get("batcher")),
        "agent": "agent" in pod_containers,
        "storage_initializer": "storage-initializer" in pod_inits or bool(storage_uri),
        "explainer": explainer,
        "has_model": bool(model),
    }


def _supports(runtime, model_format):
    return any(
        (entry.get("name") or "") == model_format
        for entry in (runtime.get("spec") or {}).get("supportedModelFormats") or []
    )


def runtime_in_use(uses, runtimes):
    """The ClusterServingRuntime (name) a predictor runs, from `runtimes` (the cluster's, before the upgrade):
    the one it names, else the runtime of its model format whose model container runs the workload's image.
    '' when it runs none of them (its own container, or a namespaced ServingRuntime)."""
    if not uses["has_model"]:
        return ""
    by_name = {r["metadata"]["name"]: r for r in runtimes}
    if uses["runtime"]:
        return uses["runtime"] if uses["runtime"] in by_name else ""
    candidates = [r for r in runtimes if _supports(r, uses["model_format"])]
    images = {r["metadata"]["name"]: _model_container(r.get("spec")).get("image") or "" for r in candidates}
    for name, image in images.items():
        if image == uses["image"]:
            return name
    # The same image repository at another tag: the runtime changed after the InferenceService was last
    # reconciled (KServe does not watch runtimes), or runtimeVersion sets the tag.
    for name, image in images.items():
        if _repository(image) == _repository(uses["image"]):
            return name
    return ""


def _model_container(spec):
    return _container(spec, MODEL_CONTAINER) or (_containers(spec) or [{}])[0]


# --- differences -----------------------------------------------------------------------------------------


def _flat(value, prefix=""):
    """{dotted.path: leaf} of a JSON-like value; lists of named dicts are keyed by name."""
    if isinstance(value, dict):
        out = {}
        for key in sorted(value):
            out.update(_flat(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, list):
        if value and all(isinstance(item, dict) and "name" in item for item in value):
            out = {}
            for item in value:
                out.update(_flat({k: v for k, v in item.items() if k != "name"}, f"{prefix}[{item['name']}]"))
            return out
        return {prefix: value}
    return {prefix: value}


def differences(before, after):
    """`path: old -> new` for each leaf that differs between two JSON-like values."""
    old, new = _flat(before), _flat(after)
    lines = []
    for path in sorted(set(old) | set(new)):
        if old.get(path, None) != new.get(path, None) or (path in old) != (path in new):
            lines.append(f"{path}: {_show(old.get(path))} -> {_show(new.get(path))}")
    return lines


def _show(value):
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def runtime_pod_fields(runtime, runtime_version=""):
    """The parts of a runtime's spec that end up in the pods (with `runtimeVersion`, images without tags)."""
    spec = {k: v for k, v in ((runtime or {}).get("spec") or {}).items() if k not in RUNTIME_SELECTION_FIELDS}
    if runtime_version:
        spec = copy.deepcopy(spec)
        for container in spec.get("containers") or []:
            if container.get("image"):
                container["image"] = _repository(container["image"])
    return spec


def config_documents(config_map):
    """inferenceservice-config's data as {key: parsed JSON} (strings that are not JSON stay strings)."""
    documents = {}
    for key, value in ((config_map or {}).get("data") or {}).items():
        try:
            documents[key] = json.loads(value)
        except (TypeError, ValueError):
            documents[key] = value
    return documents


# --- the plan --------------------------------------------------------------------------------------------


def _object_id(obj):
    metadata = obj.get("metadata") or {}
    return (obj.get("kind"), metadata.get("namespace") or "", metadata.get("name"))


def target_objects(objects):
    """(runtimes by name, inferenceservice-config) of a release's objects (after the role's patches)."""
    runtimes = {o["metadata"]["name"]: o for o in objects if o.get("kind") in RUNTIME_KINDS}
    config = next(
        (o for o in objects if _object_id(o) == ("ConfigMap", CONFIG_MAP[0], CONFIG_MAP[1])),
        None,
    )
    return runtimes, config


def plan(isvcs, workloads, pods, live_runtimes, live_config, target, runtimes_managed=True):
    """The preview: for each InferenceService, whether its pods will be replaced and why.

    isvcs: live InferenceServices. workloads: {(namespace, name, component): Knative Service or Deployment}.
    pods: {(namespace, name, component): [pods]}. live_runtimes: the cluster's ClusterServingRuntimes.
    live_config: the cluster's inferenceservice-config. target: the target release's objects (patched).
    runtimes_managed: whether the upgrade applies the release's runtimes (else runtime changes do not count).
    """
    target_runtimes, target_config = target_objects(target)
    live_docs, target_docs = config_documents(live_config), config_documents(target_config)
    entries = []
    for isvc in sorted(isvcs, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])):
        namespace, name = isvc["metadata"].get("namespace", ""), isvc["metadata"]["name"]
        reasons, later, runtimes_used, components = [], [], {}, []
        for component in COMPONENTS:
            if not (isvc.get("spec") or {}).get(component):
                continue
            key = (namespace, name, component)
            pod_spec = workload_pod_spec(workloads.get(key))
            uses = component_uses(isvc, component, pod_spec, pods.get(key) or [])
            runtime_name = runtime_in_use(uses, live_runtimes) if component == "predictor" else ""
            found = []
            if runtime_name:
                runtimes_used[component] = runtime_name
                if runtimes_managed:
                    found += _runtime_reasons(component, runtime_name, uses, live_runtimes, target_runtimes)
            if target_config is not None:
                for config_key, (when, needs) in CONFIG_KEYS.items():
                    if not _uses_config(uses, needs):
                        continue
                    changed = _config_changes(config_key, uses, live_docs, target_docs)
                    if not changed:
                        continue
                    what = f"{component}: inferenceservice-config {config_key} " + "; ".join(changed)
                    if when == "pod_template":
                        found.append(what)
                    else:
                        later.append(
                            what
                            + " (injected when a pod is created: running pods keep theirs, new pods get it)"
                        )
            if found:
                reasons += found
                components.append(component)
        entries.append(
            {
                "namespace": namespace,
                "name": name,
                "replaced": bool(reasons),
                "reasons": reasons,
                "later": later,
                "runtimes": runtimes_used,
                "components": components,
                "revisions": latest_revisions(isvc),
            }
        )
    return entries


def latest_revisions(isvc):
    """{component: its latestCreatedRevision} (Serverless mode; RawDeployment components have none)."""
    components = ((isvc.get("status") or {}).get("components")) or {}
    return {
        name: status["latestCreatedRevision"]
        for name, status in components.items()
        if isinstance(status, dict) and status.get("latestCreatedRevision")
    }


def expected_revisions(entries):
    """The components the preview says get a new revision, with the revision they have now: what the upgrade
    waits for (a new latestCreatedRevision, Ready)."""
    return [
        {"namespace": e["namespace"], "name": e["name"], "component": c, "revision": e["revisions"][c]}
        for e in entries
        for c in e["components"]
        if c in e["revisions"]
    ]


def _uses_config(uses, needs):
    if needs == "explainer":
        return bool(uses["explainer"])
    if needs == "agent":
        return uses["agent"] and not (uses["logger"] or uses["batcher"])
    return bool(uses[needs])


def _config_changes(config_key, uses, live_docs, target_docs):
    before, after = live_docs.get(config_key), target_docs.get(config_key)
    if config_key == "explainers":
        before = (before or {}).get(uses["explainer"]) if isinstance(before, dict) else before
        after = (after or {}).get(uses["explainer"]) if isinstance(after, dict) else after
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict) and "image" in (before.keys() | after.keys()):
        if before.get("image") != after.get("image"):
            return [f"image {_show(before.get('image'))} -> {_show(after.get('image'))}"]
        return []
    return differences(before, after)


def _runtime_reasons(component, runtime_name, uses, live_runtimes, target_runtimes):
    live = next(r for r in live_runtimes if r["metadata"]["name"] == runtime_name)
    if runtime_name not in target_runtimes:
        return []  # the release does not ship it: the upgrade leaves it as it is
    before = copy.deepcopy(runtime_pod_fields(live, uses["runtime_version"]))
    if uses["image"] and not uses["runtime_version"] and _model_container(before):
        # The image the workload runs is the one the new runtime's replaces: it may be older than the live
        # runtime's (a runtime changed after the InferenceService was last reconciled).
        _model_container(before)["image"] = uses["image"]
    changed = differences(before, runtime_pod_fields(target_runtimes[runtime_name], uses["runtime_version"]))
    return [f"{component}: runtime {runtime_name} {line}" for line in changed]


def replaced_names(entries):
    """`namespace/name` of the InferenceServices whose pods will be replaced."""
    return [f"{e['namespace']}/{e['name']}" for e in entries if e["replaced"]]


def summary_lines(entries):
    """Human lines for the preview: one per InferenceService, its reasons under it."""
    lines = []
    for entry in entries:
        where = f"{entry['namespace']}/{entry['name']}"
        if entry["replaced"]:
            lines.append(f"{where}: pods will be replaced (new revision)")
            lines += [f"  because {reason}" for reason in entry["reasons"]]
        else:
            lines.append(f"{where}: keeps its pods")
        lines += [f"  later: {note}" for note in entry["later"]]
    return lines
