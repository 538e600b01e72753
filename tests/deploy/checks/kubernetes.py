"""The checks of a rendered kustomization: the Kubernetes schemas, what an
operator relies on, the production overlay's pins; and the Secrets
deploy/README.md documents."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .common import (
    CLUSTER_SCOPED,
    DOCUMENTED_SECRETS,
    K8S_VERSIONS,
    OTEL_VARIABLES,
    POSTGRES_MAX_CONNECTIONS,
    ROOT,
    WORKER_STOP_SECONDS,
    Report,
    describe,
    key_of,
)
from .render import _containers, _split_image


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not match:
        raise ValueError(f"bad duration {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


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
    check(f"[{label}] Deployment runs `serve` (subcommands in cli.rs: "
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
    jmig = [e for c in jcontainers for e in c.get("env", [])
            if e["name"] == "SLRGOV_MIGRATION_DATABASE_URL"]
    server_keys = {e.get("valueFrom", {}).get("secretKeyRef", {}).get("key")
                   for c in _containers(pod) for e in c.get("env", [])}
    check(f"[{label}] the Job migrates as the schema owner (SLRGOV_MIGRATION_DATABASE_URL); "
          "the server never holds the owner's URL",
          len(jmig) == 1 and "migration-url" not in server_keys
          and not any(e["name"] == "SLRGOV_MIGRATION_DATABASE_URL"
                      for c in _containers(pod) for e in c.get("env", [])),
          f"job = {jmig}, server keys = {sorted(k for k in server_keys if k)}")

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


def check_readme(report: Report) -> None:
    text = (ROOT / "deploy/README.md").read_text()
    for secret, keys in DOCUMENTED_SECRETS.items():
        report.check(f"deploy/README.md documents Secret {secret} with keys {sorted(keys)}",
                     secret in text and all(k in text for k in keys))
