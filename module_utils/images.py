"""The container images in the objects the roles deploy, and the user's override map for them.

Pure logic, no I/O. An override map (``kserve_ansible_image_overrides``) is
``{image or prefix: replacement}``: an image is rewritten by the longest key that matches it, a key matching
an image that

- equals it (``kserve/huggingfaceserver:v0.14.1``),
- or begins it, up to a ``/``, ``:`` or ``@`` of the image (``kserve/agent`` matches ``kserve/agent:v0.14.1``
  and keeps the tag; ``gcr.io/knative-releases`` matches every Knative image and keeps each digest),

and the matched part is replaced by the key's value, so ``{"gcr.io/knative-releases": "registry.local/kn"}``
points every Knative image at a private registry with the same digests. Keys are written as the images are in
the manifests (``kserve/agent``, not ``docker.io/kserve/agent``): docs/images.md lists them.

Where images are, in an object: any string under a key ``image`` or ending in ``Image`` / ``-image``
(container images, Knative's queue-proxy image in ``config-deployment``, a ClusterStorageContainer's, KServe's
``inferenceservice-config`` JSON documents), and ``--...image...=<image>`` flags in ``args`` and ``command``
(cert-manager's ACME solver). CustomResourceDefinitions deploy no image and are left alone.
"""

import json
import re

from .manifests import ManifestError

_IMAGE_FLAG = re.compile(r"^(-{1,2}[\w.-]*image[\w.-]*=)(\S+)$", re.IGNORECASE)
_FLAG_LISTS = ("args", "command")


def _is_image_key(key):
    return key == "image" or key.endswith(("Image", "-image"))


def check_overrides(overrides):
    """ManifestError unless `overrides` is a {non-empty string: non-empty string} mapping."""
    if not isinstance(overrides, dict):
        raise ManifestError(
            f"image overrides must be a mapping of image (or prefix) to image, got {overrides!r}"
        )
    for key, value in overrides.items():
        if not (isinstance(key, str) and key and isinstance(value, str) and value):
            raise ManifestError(f"image override {key!r}: {value!r}: both must be non-empty strings")


def _matches(key, image):
    if not image.startswith(key):
        return False
    return len(image) == len(key) or key.endswith(("/", ":", "@")) or image[len(key)] in "/:@"


def override(image, overrides):
    """`image` rewritten by the longest key of `overrides` that matches it (unchanged when none does)."""
    best = max((key for key in overrides or {} if _matches(key, image)), key=len, default="")
    return overrides[best] + image[len(best) :] if best else image


def _walk(value, change, key=""):
    """`value` with `change(image)` applied to every image in it (a new structure; `value` stays as it is)."""
    if isinstance(value, dict):
        return {name: _walk(item, change, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        # list items keep the list's key: `image` lists are images, `args` lists hold flags
        return [_walk(item, change, key) for item in value]
    if isinstance(value, str):
        if _is_image_key(key):
            return change(value)
        match = _IMAGE_FLAG.match(value) if key in _FLAG_LISTS else None
        if match:
            return match.group(1) + change(match.group(2))
    return value


def _walk_json_text(text, change):
    """A ConfigMap value holding a JSON object (KServe's inferenceservice-config), its images changed."""
    try:
        document = json.loads(text)
    except ValueError:
        return text
    changed = _walk(document, change)
    return text if changed == document else json.dumps(changed, indent=4)


def _walk_object(obj, change):
    if obj.get("kind") == "CustomResourceDefinition":
        return obj
    walked = _walk(obj, change)
    if obj.get("kind") == "ConfigMap" and isinstance(obj.get("data"), dict):
        walked["data"] = {
            name: _walk_json_text(text, change)
            if isinstance(text, str) and text.lstrip().startswith("{")
            else text
            for name, text in walked["data"].items()
        }
    return walked


def override_images(objects, overrides):
    """The objects with every image rewritten by `overrides` (the objects themselves when it is empty)."""
    check_overrides(overrides)
    if not overrides:
        return objects
    return [_walk_object(obj, lambda image: override(image, overrides)) for obj in objects]


def images_in(objects):
    """Every image the objects deploy, sorted, once each."""
    found = set()

    def collect(image):
        found.add(image)
        return image

    for obj in objects:
        _walk_object(obj, collect)
    return sorted(found)
