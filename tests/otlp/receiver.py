#!/usr/bin/env python3
"""A small OTLP/gRPC receiver for the tests: the trace, metric and log
services of the OpenTelemetry collector protocol, writing every export
request it gets as one JSON line
(`{"signal": "traces"|"metrics"|"logs", "request": {...}}`,
in protobuf's JSON mapping) to --out, or counting them when no file is
given (the benchmarks).

    python3 tests/otlp/receiver.py --port 0 --out /tmp/otlp.jsonl

Prints `listening on <port>` once it serves, then runs until killed.
"""

import argparse
import base64
import json
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import (
    logs_service_pb2,
    logs_service_pb2_grpc,
)
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)


ID_KEYS = ("traceId", "spanId", "parentSpanId")


def hex_ids(value):
    """Trace and span ids as OTLP's JSON writes them (hex), not base64."""
    if isinstance(value, dict):
        return {
            k: base64.b64decode(v).hex() if k in ID_KEYS and isinstance(v, str) else hex_ids(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [hex_ids(v) for v in value]
    return value


class Sink:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.out = open(path, "a", encoding="utf-8") if path else None
        self.count = 0

    def write(self, signal, request):
        with self.lock:
            self.count += 1
            if self.out is None:
                return
            line = {"signal": signal, "request": hex_ids(MessageToDict(request))}
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink):
        self.sink = sink

    def Export(self, request, context):
        self.sink.write("traces", request)
        return trace_service_pb2.ExportTraceServiceResponse()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink):
        self.sink = sink

    def Export(self, request, context):
        self.sink.write("metrics", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, sink):
        self.sink = sink

    def Export(self, request, context):
        self.sink.write("logs", request)
        return logs_service_pb2.ExportLogsServiceResponse()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sink = Sink(args.out)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(sink), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(sink), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(sink), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"listening on {port}", flush=True)
    sys.stdout.flush()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
