"""What every check shares: the repository root, the facts the manifests
must agree with, the report the checks print to, and how an object is
named."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# The Kubernetes versions the manifests must be valid for: the oldest
# supported (the preStop `sleep` action is on by default from 1.30) and the
# newest schema kubernetes-validate ships.
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# The Secrets the manifests may reference, and their keys. deploy/README.md
# documents exactly these (checked below); their values are never in Git.
DOCUMENTED_SECRETS = {
    # url: the server's DML role; migration-url: the schema owner's, for
    # the migration Job only (deploy/postgres/roles.sql).
    "slr-governor-database": {"url", "migration-url"},
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


def key_of(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj.get("kind", "?"), meta.get("namespace", ""), meta.get("name", "?")


def describe(obj: dict) -> str:
    kind, namespace, name = key_of(obj)
    return f"{kind}/{name}" + (f" (ns {namespace})" if namespace else "")
