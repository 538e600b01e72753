"""deploy/aws/*.json: valid policy documents, and the IAM and STS actions
they allow are exactly the calls the code makes."""

from __future__ import annotations

import json
import re
from typing import Any

from .code import (connect_actions_from_code, iam_actions_from_code, ssm_actions_from_code,
                   sts_actions_from_code)
from .common import ROOT, Report


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
    connect_sdk, connect_noted = connect_actions_from_code()
    report.check(f"Connect calls found in the code: {len(connect_sdk)} SDK methods in connect.rs "
                 f"= the {len(connect_noted)} the audit trail names",
                 bool(connect_sdk) and connect_sdk == connect_noted,
                 f"only in SDK calls: {sorted(connect_sdk - connect_noted)}, only noted: "
                 f"{sorted(connect_noted - connect_sdk)}")
    ssm_sdk, ssm_noted = ssm_actions_from_code()
    report.check(f"SSM calls found in the code: {len(ssm_sdk)} SDK methods in regions.rs "
                 f"= the {len(ssm_noted)} the audit trail names",
                 bool(ssm_sdk) and ssm_sdk == ssm_noted,
                 f"only in SDK calls: {sorted(ssm_sdk - ssm_noted)}, only noted: "
                 f"{sorted(ssm_noted - ssm_sdk)}")
    tenant = documents.get("tenant-access-role-policy.json")
    if tenant:
        allowed = {a for st in _statements(tenant) if st.get("Effect") == "Allow"
                   for a in _as_list(st.get("Action", []))}
        wanted = from_sdk | connect_sdk
        report.check("the tenant access role allows exactly the IAM and Connect actions the "
                     "code calls", allowed == wanted,
                     f"missing: {sorted(wanted - allowed)}, extra: {sorted(allowed - wanted)}")
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
        report.check(f"the central role allows exactly the SSM calls the code makes "
                     f"({sorted(ssm_sdk)})",
                     {a for a in allowed if a.startswith("ssm:")} == ssm_sdk,
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
