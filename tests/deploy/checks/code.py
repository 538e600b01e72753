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
