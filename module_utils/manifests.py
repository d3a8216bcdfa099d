"""Upstream install manifests as a set of Kubernetes objects: read, verify, filter, patch and order them.

Pure logic, no cluster access (the cluster side: `k8s_apply.py`, `k8s_delete.py` and what they use).
A *source* is one release file (`serving-core.yaml`) read from its official URL or from a local mirror
directory, verified against its pinned sha256 before anything is applied. Its YAML documents become
*objects*; the set is ordered the way a careful human would apply it:

1. Namespaces and CustomResourceDefinitions (then wait until the CRDs are Established),
2. everything else (custom resources next to their CRDs need step 1; Deployments, RBAC, ConfigMaps...),
3. admission webhook configurations last, so a webhook whose pod is not serving yet cannot reject the
   objects of its own install.

Deletion runs the same phases in reverse.
"""

import base64
import copy
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

from . import releases

try:
    import yaml
except ImportError:  # the modules say so: AnsibleK8SModule requires PyYAML before any of this runs
    HAS_YAML = False
    _YamlLoader = _SafeDumper = object
else:
    HAS_YAML = True
    # libyaml parses the ~4 MB of platform manifests about ten times faster (when PyYAML was built with it).
    _YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    _SafeDumper = yaml.SafeDumper

FIRST_KINDS = ("Namespace", "CustomResourceDefinition")
LAST_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class ManifestError(Exception):
    """A manifest set cannot be used as given (bad file, bad selector, bad patch...)."""


class ChecksumMismatch(ManifestError):
    """A source's bytes are not the pinned release file."""

    def __init__(self, source, expected, actual):
        self.source = source
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checksum mismatch for {source.label}: expected sha256 {expected}, got {actual}. "
            "The file is not the pinned release file (corrupt or different version); nothing was applied."
        )


@dataclass
class ManifestSource:
    """One manifest file: `url` or `path`, its expected `sha256` and an optional label selector."""

    url: str = ""
    path: str = ""
    sha256: str = ""
    label_selector: str = ""
    requirements: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        if bool(self.url) == bool(self.path):
            raise ManifestError(f"a manifest source needs exactly one of url or path, got {self!r}")
        if self.sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            raise ManifestError(f"{self.label}: sha256 must be 64 hex digits, got {self.sha256!r}")
        self.requirements = parse_label_selector(self.label_selector)

    @property
    def label(self):
        """The file as a user names it in messages: its path, or its URL."""
        return self.path or self.url

    @classmethod
    def from_params(
        cls, params, mirror_dir="", extra_releases=None, component="", version="", allow_unpinned=False
    ):
        """A source from a module's parameters.

        `name` is a file of a release in the catalog (`releases.py`): `component` and `version` (the source's
        own, else the given defaults) say which. It is read from `mirror_dir` when one is given, else from the
        release URL, with the catalog's pinned sha256 (see `releases.release_file` for what is verified).
        `url` / `path` name any file directly, with its `sha256`: a `url` without one is refused unless
        `allow_unpinned` (a `path` is the user's own file).
        """
        label_selector = params.get("label_selector") or ""
        sha256 = (params.get("sha256") or "").lower()
        name = params.get("name") or ""
        if name:
            component = params.get("component") or component
            version = params.get("version") or version
            if not component or not version:
                raise ManifestError(f"{name}: a release file needs a component and a version")
            try:
                found = releases.release_file(
                    component, version, name, mirror_dir or "", extra_releases, allow_unpinned
                )
            except releases.ReleaseError as exc:
                raise ManifestError(str(exc)) from exc
            sha256 = found.sha256.lower()
            return cls(url=found.url, path=found.path, sha256=sha256, label_selector=label_selector)
        if params.get("url") and not sha256 and not allow_unpinned:
            raise ManifestError(
                f"{params['url']}: a download needs its sha256 (sources[].sha256), or allow_unpinned "
                "(kserve_ansible_allow_unpinned: true) to use it unverified"
            )
        return cls(
            url=params.get("url") or "",
            path=params.get("path") or "",
            sha256=sha256,
            label_selector=label_selector,
        )


# The argument spec of a patch (apply_patches), for the modules that take `patches`.
PATCH_SPEC = {
    "kind": {"type": "str", "required": True},
    "name": {"type": "str", "required": True},
    "namespace": {"type": "str"},
    "merge": {"type": "dict", "required": True},
}


def read_source(source, fetch_url):
    """Return the source's bytes: a local file, or `fetch_url(url)` for a URL."""
    if source.path:
        if not os.path.isfile(source.path):
            raise ManifestError(f"manifest file not found: {source.path}")
        with open(source.path, "rb") as handle:
            return handle.read()
    return fetch_url(source.url)


def verify_checksum(source, data):
    """Raise ChecksumMismatch when the source has a pinned sha256 and `data` does not match it."""
    if not source.sha256:
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != source.sha256.lower():
        raise ChecksumMismatch(source, source.sha256.lower(), actual)


def parse_documents(text, origin):
    """The Kubernetes objects in a multi-document YAML text (empty documents skipped, `List`s flattened)."""
    try:
        documents = list(yaml.load_all(text, Loader=_YamlLoader))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{origin}: not valid YAML: {exc}") from exc
    objects = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ManifestError(f"{origin}: document {index} is not a mapping")
        if document.get("kind") == "List" or (
            str(document.get("kind", "")).endswith("List") and "items" in document
        ):
            objects.extend(document.get("items") or [])
            continue
        objects.append(document)
    for obj in objects:
        _check_object(obj, origin)
    return objects


def inline_objects(definitions, origin="definitions"):
    """Objects given as data (a module's `definitions`), checked like a file's documents; deep copies."""
    objects = []
    for obj in definitions:
        if not isinstance(obj, dict):
            raise ManifestError(f"{origin}: not a mapping: {str(obj)[:200]}")
        _check_object(obj, origin)
        objects.append(copy.deepcopy(obj))
    return objects


def _check_object(obj, origin):
    metadata = obj.get("metadata")
    if not obj.get("apiVersion") or not obj.get("kind") or not isinstance(metadata, dict):
        raise ManifestError(f"{origin}: an object lacks apiVersion, kind or metadata: {str(obj)[:200]}")
    if not metadata.get("name") and not metadata.get("generateName"):
        raise ManifestError(f"{origin}: {obj['kind']} without metadata.name or generateName")


# --- label selectors (the equality- and set-based syntax of `kubectl -l`) ---

_SET_REQUIREMENT = re.compile(r"^\s*([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQUALITY_REQUIREMENT = re.compile(r"^\s*([^\s!=,()]+)\s*(==|=|!=)\s*([^\s!=,()]*)\s*$")
_EXISTS_REQUIREMENT = re.compile(r"^\s*(!?)\s*([^\s!=,()]+)\s*$")


def _split_selector(selector):
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def parse_label_selector(selector):
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h` into (key, operator, values) requirements."""
    requirements = []
    for part in _split_selector(selector or ""):
        match = _SET_REQUIREMENT.match(part)
        if match:
            values = frozenset(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append((match.group(1), match.group(2), values))
            continue
        match = _EQUALITY_REQUIREMENT.match(part)
        if match:
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append((match.group(1), operator, frozenset([match.group(3)])))
            continue
        match = _EXISTS_REQUIREMENT.match(part)
        if match:
            requirements.append((match.group(2), "!" if match.group(1) else "exists", frozenset()))
            continue
        raise ManifestError(f"invalid label selector {selector!r} (at {part.strip()!r})")
    return requirements


def selector_matches(requirements, labels):
    """True when `labels` (a dict, possibly None) satisfies every requirement."""
    labels = labels or {}
    for key, operator, values in requirements:
        present = key in labels
        value = str(labels.get(key, ""))
        if operator == "exists" and not present:
            return False
        if operator == "!" and present:
            return False
        if operator in ("=", "in") and (not present or value not in values):
            return False
        if operator in ("!=", "notin") and present and value in values:
            return False
    return True


def filter_by_selector(objects, requirements):
    return [obj for obj in objects if selector_matches(requirements, obj["metadata"].get("labels"))]


# --- identity and order ---


def api_group(api_version):
    return api_version.split("/")[0] if "/" in api_version else ""


def object_key(obj):
    """What identifies an object in the cluster: (group, kind, namespace, name or generateName)."""
    metadata = obj["metadata"]
    return (
        api_group(obj["apiVersion"]),
        obj["kind"],
        metadata.get("namespace") or "",
        metadata.get("name") or metadata.get("generateName"),
    )


def describe(obj):
    """`Deployment knative-serving/controller`: an object as messages name it."""
    metadata = obj["metadata"]
    name = metadata.get("name") or f"{metadata.get('generateName')}*"
    namespace = metadata.get("namespace")
    return f"{obj['kind']} {namespace}/{name}" if namespace else f"{obj['kind']} {name}"


def is_generated_name(obj):
    """Objects with only generateName (Knative's post-install Jobs) are created once, never applied."""
    return not obj["metadata"].get("name") and bool(obj["metadata"].get("generateName"))


def dedupe(objects):
    """One entry per object key; the last definition wins but keeps the first one's position.

    serving-crds.yaml and serving-core.yaml both carry the 12 Knative CRDs; applying them twice is waste.
    """
    position, latest = {}, {}
    for obj in objects:
        key = object_key(obj)
        position.setdefault(key, len(position))
        latest[key] = obj
    return [latest[key] for key in sorted(position, key=position.get)]


def phase_of(obj):
    if obj["kind"] in FIRST_KINDS and api_group(obj["apiVersion"]) in ("", "apiextensions.k8s.io"):
        return 0
    if obj["kind"] in LAST_KINDS and api_group(obj["apiVersion"]) == "admissionregistration.k8s.io":
        return 2
    return 1


def apply_phases(objects):
    """Objects in apply order, as three lists: namespaces and CRDs; the rest; admission webhooks."""
    phases = [[], [], []]
    for obj in objects:
        phases[phase_of(obj)].append(obj)
    return phases


def deletion_order(objects):
    """Reverse apply order: webhooks first (they would block the other deletes), CRDs and namespaces last."""
    return [obj for phase in reversed(apply_phases(objects)) for obj in reversed(phase)]


# --- patches: the user's settings merged into upstream objects before they are applied ---


def _merge(target, patch, where):
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, str):
            # KServe and Knative keep JSON documents in ConfigMap strings: merge into the document.
            try:
                document = json.loads(current)
            except ValueError as exc:
                raise ManifestError(
                    f"{where}.{key} is a string, not a JSON object: cannot merge into it"
                ) from exc
            if not isinstance(document, dict):
                raise ManifestError(f"{where}.{key} holds JSON that is not an object: cannot merge into it")
            _merge(document, value, f"{where}.{key}")
            target[key] = json.dumps(document, indent=4)
        elif isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value, f"{where}.{key}")
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(value)


def merge_patch(obj, patch):
    """A copy of `obj` with `patch` merged in (dicts recursively, JSON-in-string values too, None deletes)."""
    merged = copy.deepcopy(obj)
    _merge(merged, patch, describe(obj))
    return merged


def patch_matches(patch, obj):
    metadata = obj["metadata"]
    return (
        patch["kind"] == obj["kind"]
        and patch["name"] == metadata.get("name")
        and (patch.get("namespace") or "") == (metadata.get("namespace") or "")
    )


def apply_patches(objects, patches):
    """Merge each patch into the object it names; a patch that names no object of the set is an error."""
    result = list(objects)
    for patch in patches or []:
        indexes = [i for i, obj in enumerate(result) if patch_matches(patch, obj)]
        if not indexes:
            where = f"{patch.get('namespace')}/{patch['name']}" if patch.get("namespace") else patch["name"]
            raise ManifestError(f"patch target {patch['kind']} {where} is not in the manifests")
        for index in indexes:
            result[index] = merge_patch(result[index], patch.get("merge") or {})
    return result


# --- what the cluster says about objects ---

_VOLATILE_METADATA = (
    "resourceVersion",
    "managedFields",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
)


def comparable(obj):
    """The object as a user compares it: no status, no server bookkeeping in metadata."""
    if obj is None:
        return None
    view = {key: value for key, value in obj.items() if key != "status"}
    metadata = dict(view.get("metadata") or {})
    for key in _VOLATILE_METADATA:
        metadata.pop(key, None)
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop("deployment.kubernetes.io/revision", None)
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    view["metadata"] = metadata
    return view


def _managed_fields_without_time(obj):
    return [
        {key: value for key, value in entry.items() if key != "time"}
        for entry in (obj.get("metadata") or {}).get("managedFields") or []
    ]


def would_change(before, after):
    """Would writing `after` (a dry-run answer) change `before`, in content or field ownership?"""
    if before is None:
        return True
    return comparable(before) != comparable(after) or _managed_fields_without_time(
        before
    ) != _managed_fields_without_time(after)


def crd_established(crd):
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in (crd.get("status") or {}).get("conditions") or []
    )


def crd_listing_path(crd):
    """The API path listing a CRD's custom resources (all namespaces), at its storage version."""
    spec = crd["spec"]
    served = [v["name"] for v in spec.get("versions") or [] if v.get("served", True)]
    version = next((v["name"] for v in spec["versions"] if v.get("storage")), served[0] if served else None)
    return f"/apis/{spec['group']}/{version}/{spec['names']['plural']}"


def deployment_progress(deployment):
    """(rolled_out, summary) with `kubectl rollout status` semantics: observed, updated and available."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    observed = status.get("observedGeneration", 0) >= (deployment["metadata"].get("generation") or 0)
    total = status.get("replicas", 0)
    done = observed and updated >= wanted and total <= updated and available >= wanted
    summary = f"{available}/{wanted} available, {updated} updated"
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True" and condition.get("message"):
            summary += f"; {condition['type']}: {condition['message']}"
    return done, summary


def load_manifest_set(sources, patches, fetch_url):
    """Read and verify every source, then parse, filter, dedupe and patch: the objects to apply, in order.

    All checksums are verified before any object is parsed, so a wrong file fails before anything is applied.
    """
    contents = []
    for source in sources:
        data = read_source(source, fetch_url)
        verify_checksum(source, data)
        contents.append((source, data))
    objects = []
    for source, data in contents:
        found = parse_documents(data, source.label)
        objects.extend(filter_by_selector(found, source.requirements) if source.requirements else found)
    return apply_patches(dedupe(objects), patches)


class _DiffDumper(_SafeDumper):
    """YAML for diffs: multi-line strings (JSON in ConfigMaps) as blocks, so their lines diff one by one."""


def _represent_text(dumper, text):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


if HAS_YAML:
    _DiffDumper.add_representer(str, _represent_text)


# What a diff shows in place of a Secret's values. kubernetes.core's `hidden_fields` drops such fields; here
# the keys stay, so that a diff still says which value changes (never the value, nor its base64).
HIDDEN, HIDDEN_CHANGED = "<hidden>", "<hidden, changed>"
# `kubectl apply` keeps a copy of the object it applied, values included, in this annotation.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _secret_values(secret):
    """A Secret's values by key, as base64 (the API server stores `stringData` merged into `data`)."""
    values = {key: str(value) for key, value in (secret.get("data") or {}).items()}
    for key, text in (secret.get("stringData") or {}).items():
        values[key] = base64.b64encode(str(text).encode()).decode()
    values[LAST_APPLIED] = ((secret.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    return values


# Ansible masks a no_log value wherever it occurs in a result: a shorter one ("1", "true") would mask every
# such string of it ("v1"), so it is left.
SHORTEST_MASKED = 6


def secret_values(objects):
    """The values of the Secrets among `objects` as given (`stringData` text, `data` base64), for Ansible to
    mask in the module's result (its arguments included) like no_log values."""
    values = set()
    for obj in objects:
        if obj.get("kind") == "Secret":
            for field in ("data", "stringData"):
                values.update(str(value) for value in (obj.get(field) or {}).values())
    return {value for value in values if len(value) >= SHORTEST_MASKED}


def hide_secret_values(obj, before=None):
    """`obj` as a diff may show it: a Secret's values (and kubectl's copy of them) replaced by HIDDEN, or by
    HIDDEN_CHANGED where `before` (the diff's other side) holds another value for the key. Other kinds as is.
    """
    if not obj or obj.get("kind") != "Secret":
        return obj
    new = _secret_values(obj)
    old = _secret_values(before) if before else {}

    def marker(key):
        return HIDDEN_CHANGED if old.get(key) is not None and old[key] != new[key] else HIDDEN

    view = dict(obj)
    for values in ("data", "stringData"):
        if obj.get(values):
            view[values] = {key: marker(key) for key in obj[values]}
    if new[LAST_APPLIED] is not None:
        metadata = view["metadata"] = dict(obj["metadata"])
        metadata["annotations"] = {**metadata["annotations"], LAST_APPLIED: marker(LAST_APPLIED)}
    return view


class ObjectResult:
    """What happened to one object: `created`, `updated`, `unchanged`, `deleted`, `absent` or `conflict`."""

    def __init__(self, obj, action, before=None, after=None, note=""):
        self.obj, self.action, self.before, self.after, self.note = obj, action, before, after, note

    @property
    def changed(self):
        return self.action in ("created", "updated", "deleted")

    def as_dict(self):
        metadata = self.obj["metadata"]
        entry = {
            "kind": self.obj["kind"],
            "apiVersion": self.obj["apiVersion"],
            "name": metadata.get("name") or metadata.get("generateName"),
            "action": self.action,
        }
        if metadata.get("namespace"):
            entry["namespace"] = metadata["namespace"]
        # metadata.generation before and after (a spec change bumps it: the models role's canary trigger)
        for key, obj in (("previous_generation", self.before), ("generation", self.after)):
            generation = ((obj or {}).get("metadata") or {}).get("generation")
            if generation is not None and obj is not self.obj:
                entry[key] = generation
        if self.note:
            entry["note"] = self.note
        return entry

    def diff(self):
        """Ansible's diff of the object: its YAML before and after, without a Secret's values."""

        def render(obj):
            return yaml.dump(comparable(obj), Dumper=_DiffDumper, sort_keys=True) if obj is not None else ""

        after = self.after if self.action != "deleted" else None
        return {
            "before_header": describe(self.obj),
            "after_header": describe(self.obj),
            "before": render(hide_secret_values(self.before)),
            "after": render(hide_secret_values(after, before=self.before)),
        }
