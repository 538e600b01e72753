"""Rendering the kustomizations: with a real kustomize (`kustomize` or
`kubectl kustomize`), or with a minimal built-in one for machines without
it, which validate.py cross-checks against the real one where it can."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .common import CLUSTER_SCOPED, ROOT, key_of


# ---------------------------------------------------------------------------
# A minimal kustomize, for machines without one
# ---------------------------------------------------------------------------

class RenderError(Exception):
    pass


KUSTOMIZATION_FIELDS = {
    "apiVersion", "kind", "resources", "namespace", "labels",
    "configMapGenerator", "images", "patches",
}

# Strategic-merge keys of the lists our patches may touch (from the
# Kubernetes API's patchMergeKey tags). Other lists are replaced whole, as
# they are by kustomize for lists without a merge key.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath",
    "imagePullSecrets": "name", "topologySpreadConstraints": "topologyKey",
}


def _smp(base: Any, patch: Any, field: str = "") -> Any:
    """A strategic merge patch, for the subset of semantics used here."""
    if isinstance(patch, dict) and isinstance(base, dict):
        out = dict(base)
        for key, value in patch.items():
            if key.startswith("$"):
                raise RenderError(f"built-in renderer: unsupported patch directive {key}")
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _smp(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                raise RenderError(f"built-in renderer: list item of {field} without {key}")
            for i, existing in enumerate(out):
                if isinstance(existing, dict) and existing.get(key) == item[key]:
                    out[i] = _smp(existing, item, field)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _go_json(value: Any) -> str:
    """json.Marshal of Go: sorted keys, no spaces, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _configmap_hash(cm: dict) -> str:
    """kustomize's name suffix of a generated ConfigMap (api/hasher): the
    first 10 hex digits of sha256 over Go's JSON of {kind, name, data,
    binaryData}, with 0,1,3,a,e mapped to g,h,k,m,t. kustomize 5 looks the
    name up as the single field "metadata/name", which never exists, so the
    name it hashes is always "" (the kustomize cross-check pins this)."""
    encoded = {"kind": "ConfigMap", "name": "", "data": cm.get("data", {})}
    if cm.get("binaryData"):
        encoded["binaryData"] = cm["binaryData"]
    digest = hashlib.sha256(_go_json(encoded).encode()).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def _read_env_file(path: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise RenderError(f"{path}:{number}: expected KEY=VALUE")
        key, value = line.split("=", 1)
        data[key] = value
    return data


def _pod_specs(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    if obj.get("kind") == "Pod":
        return [spec]
    if obj.get("kind") == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    template = spec.get("template", {})
    return [template["spec"]] if isinstance(template, dict) and "spec" in template else []


def _containers(pod: dict) -> list[dict]:
    return [c for key in ("initContainers", "containers") for c in pod.get(key, [])]


def _rename_configmap_refs(obj: dict, renames: dict[str, str]) -> None:
    for pod in _pod_specs(obj):
        for volume in pod.get("volumes", []):
            if "configMap" in volume and volume["configMap"].get("name") in renames:
                volume["configMap"]["name"] = renames[volume["configMap"]["name"]]
            for source in volume.get("projected", {}).get("sources", []):
                if "configMap" in source and source["configMap"].get("name") in renames:
                    source["configMap"]["name"] = renames[source["configMap"]["name"]]
        for container in _containers(pod):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref and ref.get("name") in renames:
                    ref["name"] = renames[ref["name"]]
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref and ref.get("name") in renames:
                    ref["name"] = renames[ref["name"]]


def _split_image(image: str) -> tuple[str, str, str]:
    """name, tag, digest of an image reference."""
    name, digest = (image.split("@", 1) + [""])[:2]
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def _build(directory: Path) -> list[dict]:
    """Objects of a kustomization, generated ConfigMaps marked for hashing."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    k = yaml.safe_load(path.read_text()) or {}
    unknown = set(k) - KUSTOMIZATION_FIELDS
    if unknown:
        raise RenderError(f"{path}: built-in renderer does not support {sorted(unknown)}")

    objects: list[dict] = []
    for entry in k.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects.extend(_build(target))
        elif target.is_file():
            objects.extend(o for o in yaml.safe_load_all(target.read_text()) if o)
        else:
            raise RenderError(f"{path}: resource {entry} not found")

    for gen in k.get("configMapGenerator", []):
        extra = set(gen) - {"name", "envs", "literals", "behavior", "options"}
        options = gen.get("options", {})
        extra |= {f"options.{o}" for o in set(options) - {"labels"}}
        if extra:
            raise RenderError(f"{path}: built-in renderer does not support {sorted(extra)}")
        data: dict[str, str] = {}
        for env in gen.get("envs", []):
            data.update(_read_env_file(directory / env))
        for literal in gen.get("literals", []):
            key, value = literal.split("=", 1)
            data[key] = value
        behavior = gen.get("behavior", "create")
        existing = [o for o in objects if o.get("kind") == "ConfigMap"
                    and o["metadata"]["name"] == gen["name"]]
        if behavior == "create":
            if existing:
                raise RenderError(f"{path}: ConfigMap {gen['name']} already exists")
            cm = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": gen["name"]}, "data": data, "_generated": True}
            if options.get("labels"):
                cm["metadata"]["labels"] = dict(options["labels"])
            objects.append(cm)
        elif behavior in ("merge", "replace"):
            if len(existing) != 1:
                raise RenderError(f"{path}: no ConfigMap {gen['name']} to {behavior}")
            cm = existing[0]
            cm["data"] = ({**cm.get("data", {}), **data} if behavior == "merge" else data)
            if options.get("labels"):
                cm["metadata"].setdefault("labels", {}).update(options["labels"])
        else:
            raise RenderError(f"{path}: unknown behavior {behavior}")

    for entry in k.get("patches", []):
        if set(entry) != {"path"}:
            raise RenderError(f"{path}: built-in renderer supports only `patches: - path:`")
        for patch in yaml.safe_load_all((directory / entry["path"]).read_text()):
            if not patch:
                continue
            matches = [o for o in objects if o.get("kind") == patch.get("kind")
                       and o["metadata"]["name"] == patch["metadata"]["name"]]
            if len(matches) != 1:
                raise RenderError(f"{path}: patch {entry['path']} matches {len(matches)} objects")
            merged = _smp(matches[0], patch)
            matches[0].clear()
            matches[0].update(merged)

    namespace = k.get("namespace")
    if namespace:
        for obj in objects:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace

    for entry in k.get("labels", []):
        extra = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
        if extra or entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise RenderError(f"{path}: built-in renderer supports only metadata labels")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(entry.get("pairs", {}))

    for image in k.get("images", []):
        for obj in objects:
            for pod in _pod_specs(obj):
                for container in _containers(pod):
                    name, tag, digest = _split_image(container.get("image", ""))
                    if name != image["name"]:
                        continue
                    name = image.get("newName", name)
                    if "digest" in image:
                        tag, digest = "", image["digest"]
                    elif "newTag" in image:
                        tag, digest = str(image["newTag"]), ""
                    container["image"] = name + (f":{tag}" if tag else "") + (
                        f"@{digest}" if digest else "")
    return objects


def render_builtin(directory: Path) -> list[dict]:
    objects = _build(directory)
    renames = {}
    for obj in objects:
        if obj.pop("_generated", False):
            old = obj["metadata"]["name"]
            obj["metadata"]["name"] = f"{old}-{_configmap_hash(obj)}"
            renames[old] = obj["metadata"]["name"]
    for obj in objects:
        _rename_configmap_refs(obj, renames)
    return objects


def real_kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        probe = subprocess.run(["kubectl", "kustomize", "--help"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["kubectl", "kustomize"]
    return None


def render_real(command: list[str], directory: Path) -> list[dict]:
    result = subprocess.run(command + [str(directory)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RenderError(f"{' '.join(command)} {directory}: {result.stderr.strip()}")
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def kustomizations() -> list[Path]:
    base = ROOT / "deploy/kubernetes/base"
    overlays = sorted(p for p in (ROOT / "deploy/kubernetes/overlays").iterdir() if p.is_dir())
    return [base] + overlays


def canonical(objects: list[dict]) -> dict:
    return {key_of(o): json.dumps(o, sort_keys=True) for o in objects}
