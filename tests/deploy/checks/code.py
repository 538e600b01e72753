"""Facts taken from the code, so that the manifests, the Dockerfile and the
policies cannot drift from it."""

from __future__ import annotations

import re

from .common import ROOT


def env_names_from_code() -> set[str]:
    """Every environment variable name declared in env.rs."""
    text = (ROOT / "services/slr-governor/src/env.rs").read_text()
    return set(re.findall(r'pub const [A-Z0-9_]+: &str = "([A-Z][A-Z0-9_]*)";', text))


def aws_env_names_from_readme() -> set[str]:
    """The AWS_* variables the README documents (AWS access)."""
    return set(re.findall(r"`(AWS_[A-Z0-9_]+)", (ROOT / "README.md").read_text()))


def subcommands_from_code() -> set[str]:
    """clap subcommands: the variants of `enum Command` in cli.rs."""
    text = (ROOT / "services/slr-governor/src/cli.rs").read_text()
    body = re.search(r"enum Command \{(.*?)\n\}", text, re.S)
    if not body:
        return set()
    variants = re.findall(r"^\s{4}([A-Z][A-Za-z0-9]*)\b", body.group(1), re.M)
    return {re.sub(r"(?<!^)([A-Z])", r"-\1", v).lower() for v in variants}


def snake_to_action(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def actions_from_code(service: str, source: str) -> tuple[set[str], set[str]]:
    """The actions of `service` (`iam`, `connect`, `ssm`) the code calls, two
    ways: the SDK client's methods in `source` (snake_case -> action), and
    the names the audit trail records (`noted("iam", "Action", ...)`)
    anywhere in services/."""
    text = (ROOT / source).read_text()
    methods = set(re.findall(r"\bclient\s*\.\s*([a-z_]+)\s*\(\s*\)", text))
    from_sdk = {f"{service}:{snake_to_action(m)}" for m in methods}
    noted: set[str] = set()
    for path in (ROOT / "services").rglob("*.rs"):
        for action in re.findall(rf'noted\(\s*"{service}",\s*"([A-Za-z]+)"', path.read_text()):
            noted.add(f"{service}:{action}")
    return from_sdk, noted


def iam_actions_from_code() -> tuple[set[str], set[str]]:
    """IAM actions the code calls (iam.rs), and the ones it audits."""
    return actions_from_code("iam", "services/slrgov-aws/src/iam.rs")


def connect_actions_from_code() -> tuple[set[str], set[str]]:
    """Amazon Connect actions the code calls (connect.rs), and the ones it
    audits."""
    return actions_from_code("connect", "services/slrgov-aws/src/connect.rs")


def ssm_actions_from_code() -> tuple[set[str], set[str]]:
    """SSM actions the code calls (regions.rs: the region table), and the
    ones it audits."""
    return actions_from_code("ssm", "services/slrgov-aws/src/regions.rs")


def sts_actions_from_code() -> set[str]:
    text = (ROOT / "services/slrgov-aws/src/access.rs").read_text()
    actions = {f"sts:{a}" for a in re.findall(r'noted\(\s*"sts",\s*"([A-Za-z]+)"', text)}
    if "AssumeRoleProvider" in text:
        actions.add("sts:AssumeRole")
    return actions
