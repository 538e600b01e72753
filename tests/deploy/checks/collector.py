"""deploy/otel-collector/config.yaml: it parses, and its pipelines use only
defined components."""

from __future__ import annotations

import re

import yaml

from .common import ROOT, Report


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
