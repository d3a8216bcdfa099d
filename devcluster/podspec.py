"""What a kubelet makes of a pod spec before it starts a container: the environment (values, downward API,
ConfigMap and Secret references, `$(VAR)` expansion) and the volumes as files on the host (ConfigMaps,
Secrets, projected service-account tokens with the cluster CA, downward API, emptyDir, hostPath).

The API reads go through `Sources`, so the pure parts are testable with dicts.
"""

from __future__ import annotations

import base64
import json
import math
import os
import pathlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client.rest import ApiException

TOKEN_SECONDS = 3607  # what the ServiceAccount admission plugin asks for a projected token by default


class NotReadyYet(Exception):
    """Something the container needs does not exist yet (a Secret, a ConfigMap key): wait, as a kubelet
    does (ContainerCreating / CreateContainerConfigError)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Sources:
    """How to read what a pod refers to. Each call returns a dict or None (not found)."""

    config_map: Callable[[str, str], dict | None]
    secret: Callable[[str, str], dict | None]
    token: Callable[[dict, dict], str]  # (pod, serviceAccountToken source) -> token


def api_sources(core) -> Sources:
    """Sources over a kubernetes.client.CoreV1Api."""

    def read(call, namespace: str, name: str) -> dict | None:
        try:
            return core.api_client.sanitize_for_serialization(call(name, namespace))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def token(pod: dict, source: dict) -> str:
        meta = pod["metadata"]
        body = {
            "spec": {
                "audiences": [source["audience"]] if source.get("audience") else None,
                "expirationSeconds": source.get("expirationSeconds", TOKEN_SECONDS),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            }
        }
        account = pod["spec"].get("serviceAccountName") or "default"
        return core.create_namespaced_service_account_token(account, meta["namespace"], body).status.token

    return Sources(
        lambda ns, name: read(core.read_namespaced_config_map, ns, name),
        lambda ns, name: read(core.read_namespaced_secret, ns, name),
        token,
    )


# ----- environment ------------------------------------------------------------------------------------
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables replaced, `$$` a literal `$`, the rest kept."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(one, text)


def field_value(pod: dict, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(x["ip"] for x in status.get("podIPs") or []),
        "status.hostIPs": ",".join(x["ip"] for x in status.get("hostIPs") or []),
    }
    if path in simple:
        return simple[path] or ""
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ValueError(f"unsupported fieldRef {path}")


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "m": 1e-3}


def quantity(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    if not match:
        raise ValueError(f"bad quantity {text}")
    return float(match.group(1)) * _UNITS.get(match.group(2), 1)


def resource_value(container: dict, ref: dict) -> str:
    kind, name = ref["resource"].split(".", 1)
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name) or (resources.get("limits") or {}).get(name)
    if value is None:  # a kubelet reports the node's allocatable; ours are 4 CPU / 8Gi by default
        value = "4" if name == "cpu" else "8Gi"
    divisor = quantity(ref.get("divisor") or "1") or 1.0  # the API server stores an unset divisor as "0"
    return str(math.ceil(quantity(value) / divisor))


def _data(obj: dict | None, kind: str) -> dict[str, str]:
    if obj is None:
        return {}
    if kind == "secret":
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})


def container_env(pod: dict, container: dict, sources: Sources, base: dict[str, str]) -> dict[str, str]:
    """The container's environment: `base` (the kubelet's own, e.g. KUBERNETES_SERVICE_HOST), then envFrom,
    then env in order, each value expanded against what is defined before it."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        for kind, ref in (("configmap", source.get("configMapRef")), ("secret", source.get("secretRef"))):
            if not ref:
                continue
            obj = (sources.config_map if kind == "configmap" else sources.secret)(namespace, ref["name"])
            if obj is None and not ref.get("optional"):
                raise NotReadyYet("CreateContainerConfigError", f'{kind} "{ref["name"]}" not found')
            for key, value in _data(obj, kind).items():
                env[source.get("prefix", "") + key] = value
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(item.get("value") or "", env)
            continue
        ref = item["valueFrom"]
        if "fieldRef" in ref:
            env[name] = field_value(pod, ref["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in ref:
            env[name] = resource_value(container, ref["resourceFieldRef"])
        else:
            kind = "configmap" if "configMapKeyRef" in ref else "secret"
            key_ref = ref.get("configMapKeyRef") or ref.get("secretKeyRef")
            obj = (sources.config_map if kind == "configmap" else sources.secret)(namespace, key_ref["name"])
            data = _data(obj, kind)
            if key_ref["key"] not in data:
                if key_ref.get("optional"):
                    continue
                what = f'{kind} "{key_ref["name"]}"' if obj is None else f"key {key_ref['key']} in {kind}"
                raise NotReadyYet("CreateContainerConfigError", f"{what} not found")
            env[name] = data[key_ref["key"]]
    return env


def command_line(argv: list[str], env: dict[str, str]) -> list[str]:
    return [expand(arg, env) for arg in argv]


# ----- volumes ----------------------------------------------------------------------------------------
def _write_files(directory: pathlib.Path, files: dict[str, bytes]) -> None:
    """Make `directory` hold exactly `files` (relative paths), each written atomically when it changed."""
    directory.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_bytes() == content:
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)
    wanted = {directory / rel for rel in files}
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.is_file() and path not in wanted:
            path.unlink()


def _key_files(
    data: dict[str, bytes], items: list[dict] | None, what: str, optional: bool
) -> dict[str, bytes]:
    if not items:
        return dict(data)
    files = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise NotReadyYet("ContainerCreating", f"configuration key {item['key']} not found in {what}")
        files[item["path"]] = data[item["key"]]
    return files


def _object_files(kind: str, name: str, namespace: str, items, optional: bool, sources: Sources):
    obj = (sources.config_map if kind == "configmap" else sources.secret)(namespace, name)
    if obj is None:
        if optional:
            return {}
        raise NotReadyYet("ContainerCreating", f'MountVolume.SetUp failed: {kind} "{name}" not found')
    if kind == "secret":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    else:
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return _key_files(data, items, f'{kind} "{name}"', optional)


def _downward_files(pod: dict, items: list[dict]) -> dict[str, bytes]:
    return {item["path"]: field_value(pod, item["fieldRef"]["fieldPath"]).encode() for item in items or []}


def volume_files(pod: dict, volume: dict, sources: Sources) -> dict[str, bytes] | None:
    """The files of one volume (None for a volume that is a directory of its own: emptyDir, hostPath)."""
    namespace = pod["metadata"]["namespace"]
    if "configMap" in volume:
        ref = volume["configMap"]
        return _object_files(
            "configmap", ref["name"], namespace, ref.get("items"), ref.get("optional"), sources
        )
    if "secret" in volume:
        ref = volume["secret"]
        return _object_files(
            "secret", ref["secretName"], namespace, ref.get("items"), ref.get("optional"), sources
        )
    if "downwardAPI" in volume:
        return _downward_files(pod, volume["downwardAPI"].get("items"))
    if "projected" in volume:
        files: dict[str, bytes] = {}
        for source in volume["projected"].get("sources") or []:
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                files[sat["path"]] = sources.token(pod, sat).encode()
            elif "configMap" in source:
                ref = source["configMap"]
                files.update(
                    _object_files(
                        "configmap", ref["name"], namespace, ref.get("items"), ref.get("optional"), sources
                    )
                )
            elif "secret" in source:
                ref = source["secret"]
                files.update(
                    _object_files(
                        "secret", ref["name"], namespace, ref.get("items"), ref.get("optional"), sources
                    )
                )
            elif "downwardAPI" in source:
                files.update(_downward_files(pod, source["downwardAPI"].get("items")))
        return files
    return None


def materialise(pod: dict, volume: dict, directory: pathlib.Path, sources: Sources) -> str:
    """Write one volume under `directory` (per pod) and return the host path its mounts bind."""
    if "hostPath" in volume:
        path = pathlib.Path(volume["hostPath"]["path"])
        if volume["hostPath"].get("type") in ("DirectoryOrCreate", "", None):
            path.mkdir(parents=True, exist_ok=True)
        return str(path)
    target = directory / volume["name"]
    files = volume_files(pod, volume, sources)
    if files is None:  # emptyDir, and what we do not model (PVCs, CSI...) as an empty directory
        target.mkdir(parents=True, exist_ok=True)
    else:
        _write_files(target, files)
    return str(target)


def mounts(container: dict, volume_paths: dict[str, str]) -> list[list]:
    """[source, target, read_only] for each volumeMount (subPath: a file or directory inside the volume)."""
    result = []
    for mount in container.get("volumeMounts") or []:
        source = volume_paths.get(mount["name"])
        if source is None:
            continue
        if mount.get("subPath"):
            source = str(pathlib.Path(source) / mount["subPath"])
        result.append([source, mount["mountPath"], bool(mount.get("readOnly"))])
    return result


def remove(directory: pathlib.Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, default=str)
