"""Render a kustomization in pure Python — the subset deploy/kubernetes uses.

Why not the real thing: kustomize is a Go program. PyPI has no renderer of
kustomization files (the ``kustomize`` package there writes manifests from
Python and calls the binary; ``pykustomize`` needs Python ≥ 3.14), Debian 12
has only kubectl 1.20 (kustomize 2, which knows neither ``patches:`` nor
``replicas:``) and Go 1.19 (too old to build kustomize 5), and CI starts from
a clean machine that can reach only the package registries. So the deploy
tests render with this module, which knows exactly the fields the overlays
use and refuses any other (an overlay that grows a new feature fails loudly
here instead of being rendered wrongly), and ``tests/test_deploy.py`` checks
it against the real ``kubectl kustomize`` / ``kustomize build`` wherever one
is installed.

Supported: ``resources`` (files and directories), ``namespace``, ``images``
(newName/newTag/digest), ``replicas``, and ``patches`` — strategic-merge
patches (by kind and name, with the Kubernetes merge keys of the lists these
manifests patch, ``null`` deletes a field) and JSON 6902 patches (add,
remove, replace), from ``path`` or inline ``patch``, with an optional
``target`` (kind, name, group, version, namespace, labelSelector ``k=v,…``).
Transformers run in kustomize's order: patches, namespace, replicas, images.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches"}
PATCH_FIELDS = {"path", "patch", "target"}
TARGET_FIELDS = {"kind", "name", "group", "version", "namespace", "labelSelector"}
IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
}
SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}
# patchMergeKey of the lists a strategic-merge patch here may touch (Kubernetes API types);
# any other list is replaced whole, as kustomize does for lists without a merge key
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "envFrom": None,  # atomic in the API
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "volumeClaimTemplates": None,
}


class Unsupported(ValueError):
    """The kustomization uses something this renderer does not implement."""


def build(directory: Path | str) -> list[Obj]:
    """The objects ``kustomize build DIRECTORY`` would print."""
    directory = Path(directory)
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            k = yaml.safe_load((directory / name).read_text(encoding="utf-8")) or {}
            break
    else:
        raise Unsupported(f"{directory}: no kustomization.yaml")
    unknown = set(k) - KUSTOMIZATION_FIELDS
    if unknown:
        raise Unsupported(f"{directory}: kustomization fields not supported here: {sorted(unknown)}")
    objs: list[Obj] = []
    for entry in k.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objs.extend(build(path))
        else:
            objs.extend(load(path))
    _check_unique(objs, directory)
    for patch in k.get("patches", []):
        _apply_patch(objs, patch, directory)
    if "namespace" in k:
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    for r in k.get("replicas", []):
        hits = [o for o in objs if o["kind"] in SCALABLE and o["metadata"]["name"] == r["name"]]
        if not hits:
            raise Unsupported(f"{directory}: replicas for {r['name']}: no such Deployment/StatefulSet")
        for o in hits:
            o["spec"]["replicas"] = r["count"]
    for image in k.get("images", []):
        if set(image) - IMAGE_FIELDS:
            raise Unsupported(f"{directory}: image fields not supported: {sorted(set(image) - IMAGE_FIELDS)}")
        for o in objs:
            _set_images(o, image)
    return objs


def load(path: Path) -> list[Obj]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise Unsupported(f"{path}: not a Kubernetes object: {str(d)[:80]}")
    return docs


def key(o: Obj) -> tuple[str, str, str, str]:
    return (o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])


def _check_unique(objs: list[Obj], where: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for o in objs:
        if key(o) in seen:
            raise Unsupported(f"{where}: {key(o)} is defined twice")
        seen.add(key(o))


# ---------------------------------------------------------------- patches


def _apply_patch(objs: list[Obj], spec: Obj, directory: Path) -> None:
    if set(spec) - PATCH_FIELDS or ("path" in spec) == ("patch" in spec):
        raise Unsupported(f"{directory}: a patch needs exactly one of path/patch (and optionally target): {spec}")
    text = (directory / spec["path"]).read_text(encoding="utf-8") if "path" in spec else spec["patch"]
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    target = spec.get("target")
    if target is not None and set(target) - TARGET_FIELDS:
        raise Unsupported(f"{directory}: patch target fields not supported: {sorted(set(target) - TARGET_FIELDS)}")
    if len(docs) == 1 and isinstance(docs[0], list):  # JSON 6902
        if target is None:
            raise Unsupported(f"{directory}: a JSON 6902 patch needs a target")
        hits = [o for o in objs if _matches(o, target)]
        if not hits:
            raise Unsupported(f"{directory}: patch target {target} matches nothing")
        for o in hits:
            for op in docs[0]:
                _json6902(o, op)
        return
    for doc in docs:  # strategic merge, one object per document
        if not isinstance(doc, dict):
            raise Unsupported(f"{directory}: a strategic-merge patch must be an object")
        if target is not None:
            hits = [o for o in objs if _matches(o, target)]
        else:
            hits = [
                o for o in objs if o["kind"] == doc.get("kind") and o["metadata"]["name"] == doc["metadata"]["name"]
            ]
        if not hits:
            raise Unsupported(f"{directory}: patch {doc.get('kind')}/{doc['metadata']['name']} matches nothing")
        for o in hits:
            body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
            if target is not None:  # the patch's own name is not applied to the targets
                body = {**body, "metadata": {k: v for k, v in body.get("metadata", {}).items() if k != "name"}}
            merged = _merge(o, body, ())
            o.clear()
            o.update(merged)


def _matches(o: Obj, target: Obj) -> bool:
    group, _, version = o["apiVersion"].rpartition("/")
    if "kind" in target and target["kind"] != o["kind"]:
        return False
    if "name" in target and not re.fullmatch(target["name"], o["metadata"]["name"]):
        return False
    if "group" in target and target["group"] != group:
        return False
    if "version" in target and target["version"] != version:
        return False
    if "namespace" in target and target["namespace"] != o["metadata"].get("namespace"):
        return False
    if "labelSelector" in target:
        labels = o["metadata"].get("labels", {})
        for term in target["labelSelector"].split(","):
            k, sep, v = term.strip().partition("=")
            if not sep or k.endswith("!") or v.startswith("="):
                raise Unsupported(f"label selector term {term!r}: only k=v is supported")
            if labels.get(k.strip()) != v.strip():
                return False
    return True


def _merge(base: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if isinstance(patch, dict) and isinstance(base, dict):
        out = dict(base)
        for k, v in patch.items():
            if isinstance(k, str) and k.startswith("$"):
                raise Unsupported(f"strategic-merge directive {k} at {'.'.join(path)} is not supported")
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = _merge(out[k], v, (*path, k))
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(patch, list) and isinstance(base, list):
        field = path[-1] if path else ""
        if field == "ports":  # a container's ports merge on containerPort, a Service's on port
            merge_key: str | None = "containerPort" if {"containers", "initContainers"} & set(path) else "port"
        else:
            merge_key = MERGE_KEYS.get(field)
        if merge_key is None:
            return copy.deepcopy(patch)
        out_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            if not isinstance(item, dict) or merge_key not in item:
                raise Unsupported(f"list {'.'.join(path)}: every patch item needs its {merge_key}")
            for i, existing in enumerate(out_list):
                if existing.get(merge_key) == item[merge_key]:
                    out_list[i] = _merge(existing, item, path)
                    break
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise Unsupported(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json6902(o: Obj, op: Obj) -> None:
    kind = op.get("op")
    if kind not in ("add", "remove", "replace"):
        raise Unsupported(f"JSON 6902 op {kind!r} is not supported")
    *parents, last = _pointer(op["path"])
    node: Any = o
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        if kind == "add":
            node.insert(len(node) if last == "-" else int(last), copy.deepcopy(op["value"]))
        elif kind == "remove":
            del node[int(last)]
        else:
            node[int(last)] = copy.deepcopy(op["value"])
        return
    if kind in ("remove", "replace") and last not in node:
        raise Unsupported(f"JSON 6902 {kind} {op['path']}: no such field in {o['kind']}/{o['metadata']['name']}")
    if kind == "remove":
        del node[last]
    else:
        node[last] = copy.deepcopy(op["value"])


# ---------------------------------------------------------------- images


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """``registry:5000/a/b:1.2@sha256:…`` → (name, tag, digest)."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _set_images(node: Any, image: Obj) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("containers", "initContainers") and isinstance(v, list):
                for c in v:
                    name, tag, digest = split_image(c.get("image", ""))
                    if name != image["name"]:
                        continue
                    name = image.get("newName", name)
                    if "digest" in image:
                        c["image"] = f"{name}@{image['digest']}"
                    else:
                        tag = image.get("newTag", tag)
                        c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            else:
                _set_images(v, image)
    elif isinstance(node, list):
        for v in node:
            _set_images(v, image)
