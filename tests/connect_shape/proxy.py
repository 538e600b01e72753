#!/usr/bin/env python3
"""The Connect shape layer: an HTTP proxy in front of moto that answers
Amazon Connect calls the way real Connect does.

    python proxy.py --moto http://127.0.0.1:<moto port> --port 0 [--plan '<json>']

prints `listening on 127.0.0.1:<port>` once it accepts connections.

Every request is forwarded to moto (method, path, query, headers including
Authorization, body) and moto's status, headers and body come back, except:

- Connect answers (credential scope service `connect`) carrying `Instance`
  or `InstanceSummaryList` are reshaped:
  - `CreatedTime` becomes epoch seconds (a JSON number), as real Connect's
    REST-JSON sends it; moto sends ISO text, which aws-sdk-connect cannot
    parse;
  - `ServiceRole` becomes the instance's own role,
    `arn:<partition>:iam::<account>:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForconnect_<suffix>`,
    with `<account>` from the instance's ARN and `<suffix>` the first 20 hex
    characters of sha256("slrgov-test/connect-role/" + instance id): the
    test stand-in for the random suffix real Connect gives, spelled as moto's
    IAM names a Connect service-linked role created with that custom suffix
    (moto shares one unsuffixed `AWSServiceRoleForAmazonConnect` among all
    instances and creates no IAM role for it);
  - an instance whose alias starts with `legacy-` stands for one created
    before October 2018: it has no `ServiceRole` and was created on
    2017-06-01T00:00:00Z.
- Faults from the plan (JSON, every key optional):
  `{"throttle": {"ListInstances": 2}}` -- the first N calls of that operation
  answer 400 ThrottlingException "Rate exceeded";
  `{"access_denied": ["eu-west-2"]}` -- Connect calls in those regions answer
  403 AccessDeniedException;
  `{"not_enabled": ["af-south-1"]}` -- Connect calls in those regions answer
  403 UnrecognizedClientException, as an opt-in region that is not enabled.
  Errors carry the restJson1 error shape: header `x-amzn-ErrorType` and a
  body `{"__type": ..., "message": ...}` (aws-sdk-connect takes the code from
  the header first, then the body's `code`, then `__type`).
- Every Connect call is counted by (operation, region, access key);
  `GET /__slrgov/calls` answers
  `[{"operation", "region", "access_key", "count"}]`. Other services' calls
  (IAM, STS, SSM, ...) go through untouched and are not counted.

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import threading
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

CALLS_PATH = "/__slrgov/calls"
ROLE_SUFFIX_SALT = "slrgov-test/connect-role/"
LEGACY_PREFIX = "legacy-"
LEGACY_CREATED = datetime(2017, 6, 1, tzinfo=timezone.utc).timestamp()

# Headers that belong to one hop, or that this proxy sets itself.
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "expect",
}
# Headers of moto's answers that send_response() already writes.
OWN_RESPONSE_HEADERS = HOP_HEADERS | {"server", "date"}

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


def role_suffix(instance_id: str) -> str:
    """The custom suffix of an instance's service-linked role."""
    return hashlib.sha256((ROLE_SUFFIX_SALT + instance_id).encode()).hexdigest()[:20]


def credential_scope(authorization: str | None, query: str) -> tuple[str, str, str] | None:
    """(access key, region, service) of a SigV4 request: the Authorization
    header, or a presigned URL's X-Amz-Credential."""
    if authorization:
        match = CREDENTIAL.search(authorization)
        if match:
            return match.group(1), match.group(3), match.group(4)
    credential = parse_qs(query).get("X-Amz-Credential")
    if credential:
        parts = credential[0].split("/")
        if len(parts) == 5:
            return parts[0], parts[2], parts[3]
    return None


def connect_operation(method: str, path: str) -> str:
    """The Connect operation a request is (the four this layer knows), or
    `<METHOD> /<first path segment>` for the others."""
    parts = path.split("/")
    if parts[1:] == ["instance"]:
        if method == "GET":
            return "ListInstances"
        if method == "PUT":
            return "CreateInstance"
    if len(parts) == 3 and parts[1] == "instance" and parts[2]:
        if method == "GET":
            return "DescribeInstance"
        if method == "DELETE":
            return "DeleteInstance"
    first = parts[1] if len(parts) > 1 else ""
    return f"{method} /{first}"


def reshape_instance(instance: dict) -> None:
    """Gives one instance (summary) real Connect's shape, in place."""
    alias = instance.get("InstanceAlias") or ""
    if alias.startswith(LEGACY_PREFIX):
        instance.pop("ServiceRole", None)
        instance["CreatedTime"] = LEGACY_CREATED
        return
    created = instance.get("CreatedTime")
    if isinstance(created, str):
        parsed = datetime.fromisoformat(created)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        instance["CreatedTime"] = parsed.timestamp()
    arn = instance.get("Arn") or ""
    # arn:<partition>:connect:<region>:<account>:instance/<id>
    fields = arn.split(":")
    instance_id = instance.get("Id") or arn.rsplit("/", 1)[-1]
    if len(fields) >= 6 and instance_id:
        partition, account = fields[1], fields[4]
        instance["ServiceRole"] = (
            f"arn:{partition}:iam::{account}:role/aws-service-role/"
            f"connect.amazonaws.com/AWSServiceRoleForconnect_{role_suffix(instance_id)}"
        )


def reshape(body: bytes) -> bytes | None:
    """The reshaped body of a Connect answer, or None when it has no
    instance in it."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("Instance"), dict):
        reshape_instance(document["Instance"])
    elif isinstance(document.get("InstanceSummaryList"), list):
        for summary in document["InstanceSummaryList"]:
            if isinstance(summary, dict):
                reshape_instance(summary)
    else:
        return None
    return json.dumps(document).encode()


class Plan:
    """The faults to inject, and what has been seen so far."""

    KEYS = {"throttle", "access_denied", "not_enabled"}

    def __init__(self, plan: dict) -> None:
        unknown = set(plan) - self.KEYS
        if unknown:
            raise ValueError(f"unknown plan keys: {sorted(unknown)}")
        self.throttle: dict[str, int] = {k: int(v) for k, v in plan.get("throttle", {}).items()}
        self.access_denied: set[str] = set(plan.get("access_denied", []))
        self.not_enabled: set[str] = set(plan.get("not_enabled", []))
        self.throttled: dict[str, int] = {}
        self.calls: dict[tuple[str, str, str], int] = {}
        self.lock = threading.Lock()

    def record(self, operation: str, region: str, key: str) -> tuple[int, str, str] | None:
        """Counts a Connect call; returns the fault to answer with (status,
        error code, message), if any."""
        with self.lock:
            slot = (operation, region, key)
            self.calls[slot] = self.calls.get(slot, 0) + 1
            if region in self.not_enabled:
                return 403, "UnrecognizedClientException", "The security token included in the request is invalid."
            if region in self.access_denied:
                return (
                    403,
                    "AccessDeniedException",
                    f"User: {key} is not authorized to perform: connect:{operation} on resource: "
                    f"arn:aws:connect:{region}:*:instance/* because no identity-based policy allows "
                    f"the connect:{operation} action",
                )
            used = self.throttled.get(operation, 0)
            if used < self.throttle.get(operation, 0):
                self.throttled[operation] = used + 1
                return 400, "ThrottlingException", "Rate exceeded"
            return None

    def calls_json(self) -> bytes:
        with self.lock:
            rows = [
                {"operation": op, "region": region, "access_key": key, "count": count}
                for (op, region, key), count in sorted(self.calls.items())
            ]
        return json.dumps(rows).encode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hands moto's redirects back to the caller instead of following them."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    moto: str = ""
    plan: Plan
    verbose = False

    def do_GET(self) -> None:
        self.handle_request()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def log_request(self, code="-", size="-") -> None:  # noqa: ANN001
        if self.verbose:
            super().log_request(code, size)

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, up to the empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_request(self) -> None:
        split = urlsplit(self.path)
        body = self.read_body()
        if split.path == CALLS_PATH:
            self.answer(200, [("Content-Type", "application/json")], self.plan.calls_json())
            return
        scope = credential_scope(self.headers.get("Authorization"), split.query)
        if scope is None or scope[2] != "connect":
            self.answer(*self.forward(body))
            return
        key, region, _ = scope
        operation = connect_operation(self.command, unquote(split.path))
        fault = self.plan.record(operation, region, key)
        if fault is not None:
            status, code, message = fault
            self.answer(
                status,
                [
                    ("Content-Type", "application/json"),
                    ("x-amzn-ErrorType", code),
                    ("x-amzn-RequestId", str(uuid.uuid4())),
                ],
                json.dumps({"__type": code, "message": message}).encode(),
            )
            return
        status, headers, data = self.forward(body)
        if 200 <= status < 300:
            reshaped = reshape(data)
            if reshaped is not None:
                # moto labels its Connect JSON text/html.
                headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
                headers.append(("Content-Type", "application/json"))
                data = reshaped
        self.answer(status, headers, data)

    def forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        with_body = bool(body) or self.command in ("POST", "PUT", "PATCH")
        request = urllib.request.Request(
            self.moto + self.path, data=body if with_body else None, method=self.command
        )
        for name, value in self.headers.items():
            if name.lower() not in HOP_HEADERS:
                request.add_header(name, value)
        try:
            with OPENER.open(request, timeout=120) as response:
                return response.status, list(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            return error.code, list(error.headers.items()), error.read()
        except OSError as error:
            message = json.dumps({"message": f"connect shape proxy: moto unreachable: {error}"})
            return 502, [("Content-Type", "application/json")], message.encode()

    def answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in OWN_RESPONSE_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moto", required=True, help="moto's URL, http://127.0.0.1:<port>")
    parser.add_argument("--port", type=int, default=0, help="the port to listen on (0: any free one)")
    parser.add_argument("--plan", default="{}", help="the faults to inject, as JSON")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args()

    Handler.moto = args.moto.rstrip("/")
    Handler.plan = Plan(json.loads(args.plan))
    Handler.verbose = args.verbose
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
