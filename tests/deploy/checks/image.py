"""The two images agree: deploy/Dockerfile's final (distroless) stage and
deploy/Containerfile.scratch must give a container the same entry point,
command, user, environment, exposed ports, working directory and labels.

Checked statically in validate.py (no build), and against a built image by
tests/deploy/image.sh:

    cd tests/deploy && python3 -m checks.image --inspect inspect.json

where inspect.json is `podman image inspect <image>`; it exits 1 when the
built image's configuration differs from deploy/Dockerfile's final stage.

Only the final stage's own instructions can be read offline, so the
environment distroless/cc's base image sets (PATH and SSL_CERT_FILE, see
GoogleContainerTools/distroless base/base.bzl) is added to it here.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from .common import ROOT, Report

DOCKERFILE = ROOT / "deploy/Dockerfile"
SCRATCH = ROOT / "deploy/Containerfile.scratch"

# What gcr.io/distroless/cc-debian12:nonroot itself sets, inherited by the
# final stage of deploy/Dockerfile.
DISTROLESS_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
}
# Labels a builder adds by itself (buildah: io.buildah.version).
BUILDER_LABELS = re.compile(r"^io\.buildah\.")

FIELDS = ("entrypoint", "cmd", "user", "env", "expose", "workdir", "labels")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and
    comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        if whole:
            keyword, _, rest = whole.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def pairs(arguments: str) -> dict[str, str]:
    """ENV/LABEL arguments: KEY=VALUE ..., or the legacy `KEY VALUE`."""
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def final_stage(path: Path) -> dict:
    """The configuration the final stage of a Dockerfile sets: base image,
    entrypoint, cmd, user, env, exposed ports, workdir and labels, plus the
    COPY/ADD instructions."""
    stage: dict = {}
    for keyword, arguments in instructions(path.read_text()):
        if keyword == "FROM":
            stage = {"from": arguments.split()[0], "entrypoint": None, "cmd": None,
                     "user": "", "env": {}, "expose": set(), "workdir": "",
                     "labels": {}, "copies": []}
        elif not stage:
            continue
        elif keyword in ("ENTRYPOINT", "CMD"):
            stage[keyword.lower()] = json.loads(arguments)
        elif keyword == "USER":
            stage["user"] = arguments
        elif keyword == "ENV":
            stage["env"].update(pairs(arguments))
        elif keyword == "LABEL":
            stage["labels"].update(pairs(arguments))
        elif keyword == "EXPOSE":
            stage["expose"].update(p if "/" in p else f"{p}/tcp" for p in arguments.split())
        elif keyword == "WORKDIR":
            stage["workdir"] = arguments
        elif keyword in ("COPY", "ADD"):
            stage["copies"].append((keyword, arguments))
    return stage


def runtime_config(path: Path) -> dict:
    """What a container of the image built from `path` runs with: the final
    stage's settings, the distroless base image's environment included."""
    stage = final_stage(path)
    config = {field: stage[field] for field in FIELDS}
    if "distroless" in stage["from"]:
        config["env"] = {**DISTROLESS_ENV, **stage["env"]}
    return config


def inspected_config(inspect: list | dict) -> dict:
    """The same fields from `podman image inspect` (or `docker image
    inspect`) output."""
    image = inspect[0] if isinstance(inspect, list) else inspect
    config = image.get("Config", {})
    return {
        "entrypoint": config.get("Entrypoint"),
        "cmd": config.get("Cmd"),
        "user": config.get("User", ""),
        "env": dict(e.split("=", 1) for e in config.get("Env") or []),
        "expose": set(config.get("ExposedPorts") or {}),
        "workdir": config.get("WorkingDir", ""),
        "labels": {k: v for k, v in (config.get("Labels") or {}).items()
                   if not BUILDER_LABELS.match(k)},
    }


def differences(expected: dict, actual: dict) -> list[str]:
    return [f"{field}: {expected[field]!r} != {actual[field]!r}"
            for field in FIELDS if expected[field] != actual[field]]


def check_images(report: Report, hadolint: str | None) -> None:
    """deploy/Containerfile.scratch against deploy/Dockerfile, offline."""
    if not report.check("deploy/Containerfile.scratch exists", SCRATCH.exists()):
        return
    if hadolint:
        result = subprocess.run([hadolint, "--no-color", str(SCRATCH)], capture_output=True,
                                text=True)
        report.check("deploy/Containerfile.scratch passes hadolint", result.returncode == 0,
                     (result.stdout + result.stderr).strip())
    stage = final_stage(SCRATCH)
    report.check("the scratch image is FROM scratch, single-stage",
                 stage["from"] == "scratch"
                 and len(re.findall(r"^FROM\s", SCRATCH.read_text(), re.M)) == 1,
                 f"FROM {stage['from']}")
    expected, actual = runtime_config(DOCKERFILE), runtime_config(SCRATCH)
    for field in FIELDS:
        report.check(f"both images have the same {field}", expected[field] == actual[field],
                     f"Dockerfile {expected[field]!r}, Containerfile.scratch {actual[field]!r}")
    entrypoint = (expected["entrypoint"] or [""])[0]
    report.check(f"the scratch image copies the binary to the entry point {entrypoint}",
                 any(a.split()[-1] == entrypoint for k, a in stage["copies"] if k == "COPY"))
    report.check("the scratch image adds rootfs.tar (passwd, CA bundle, home, /tmp)",
                 ("ADD", "rootfs.tar /") in stage["copies"])
    context = ROOT / "deploy/scratch-context.py"
    script = context.read_text() if context.exists() else ""
    certificates = actual["env"].get("SSL_CERT_FILE", "")
    report.check(f"scratch-context.py puts the CA bundle at SSL_CERT_FILE ({certificates})",
                 bool(certificates) and f'"{certificates.lstrip("/")}"' in script)
    report.check(f"scratch-context.py makes the working directory {actual['workdir']} "
                 f"and it belongs to the image's user ({actual['user']})",
                 f'entry("{actual["workdir"].lstrip("/")}", 0o700, uid=NONROOT)' in script
                 and actual["user"] == "65532:65532" and "NONROOT = 65532" in script)


def main() -> int:
    parser = argparse.ArgumentParser(description="Compare a built image's configuration "
                                     "with deploy/Dockerfile's final stage.")
    parser.add_argument("--inspect", type=Path, required=True,
                        help="the JSON of `podman image inspect IMAGE`")
    args = parser.parse_args()
    expected = runtime_config(DOCKERFILE)
    actual = inspected_config(json.loads(args.inspect.read_text()))
    for field in FIELDS:
        shown = sorted(actual[field]) if isinstance(actual[field], set) else actual[field]
        print(f"{'ok  ' if expected[field] == actual[field] else 'DIFF'} {field}: {shown}")
    diff = differences(expected, actual)
    for line in diff:
        print(f"differs from deploy/Dockerfile: {line}", file=sys.stderr)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
