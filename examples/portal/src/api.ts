// The slr-governor clients a portal needs, over gRPC-Web (HTTP/1.1, so any
// browser and any proxy in front of the server will do), with the caller's
// bearer token on every call.

import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { Operations, type Operation } from "./gen/google/longrunning/operations_pb.js";
import { ErrorInfoSchema, RequestInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import {
  InstanceService,
  WatchInstancesResponse_ChangeType,
  type WatchInstancesResponse,
} from "./gen/slrgov/v1/instance_service_pb.js";
import { LinkedRoleService } from "./gen/slrgov/v1/linked_role_service_pb.js";
import {
  LinkedRoleSchema,
  LinkedRole_State,
  OperationMetadataSchema,
  type Instance,
  type LinkedRole,
} from "./gen/slrgov/v1/resources_pb.js";

export {
  LinkedRole_State,
  WatchInstancesResponse_ChangeType,
  type Instance,
  type LinkedRole,
  type Operation,
  type WatchInstancesResponse,
};

export interface Api {
  instances: Client<typeof InstanceService>;
  linkedRoles: Client<typeof LinkedRoleService>;
  operations: Client<typeof Operations>;
}

/** Clients of `baseUrl` (e.g. `https://slr-governor.example.com`) that send `token`. */
export function connect(baseUrl: string, token: string): Api {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = createGrpcWebTransport({
    baseUrl: baseUrl.replace(/\/+$/, ""),
    interceptors: [bearer],
    defaultTimeoutMs: 30_000,
  });
  return {
    instances: createClient(InstanceService, transport),
    linkedRoles: createClient(LinkedRoleService, transport),
    operations: createClient(Operations, transport),
  };
}

/** Every instance of every account the token may see (`accounts/-`), all pages. */
export async function listInstances(api: Api): Promise<Instance[]> {
  const all: Instance[] = [];
  let pageToken = "";
  do {
    const page = await api.instances.listInstances({ parent: "accounts/-", pageSize: 100, pageToken });
    all.push(...page.instances);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return all;
}

/**
 * Lists every instance the token may see and follows their changes: calls
 * `onList` with the list, then `onChange` with each change, until `signal`
 * aborts. The watch opens first and its first message (a BOOKMARK) gives the
 * position the list is read after, so no change between the two is missed;
 * a change the list already shows carries the same state and changes
 * nothing. A dropped stream is resumed from the last message's token; a
 * token too old for the server's log (OUT_OF_RANGE) lists again.
 */
export async function listAndWatch(
  api: Api,
  signal: AbortSignal,
  onList: (instances: Instance[]) => void,
  onChange: (change: WatchInstancesResponse) => void,
): Promise<void> {
  let resumeToken = "";
  let listed = false;
  while (!signal.aborted) {
    try {
      // No deadline: the stream stays open (the server ends it now and then;
      // it is then resumed here).
      const stream = api.instances.watchInstances({ parent: "accounts/-", resumeToken }, { signal, timeoutMs: 0 });
      for await (const change of stream) {
        resumeToken = change.resumeToken;
        if (!listed) {
          onList(await listInstances(api));
          listed = true;
        } else if (change.changeType !== WatchInstancesResponse_ChangeType.BOOKMARK) {
          onChange(change);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      const e = ConnectError.from(err);
      if (!listed) throw e;
      if (e.code === Code.OutOfRange) {
        resumeToken = "";
        listed = false;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

/** Polls GetOperation every `everyMs` until the operation is done, reporting each state seen. */
export async function pollOperation(
  api: Api,
  op: Operation,
  onProgress: (op: Operation) => void,
  everyMs = 500,
): Promise<Operation> {
  onProgress(op);
  while (!op.done) {
    await new Promise((resolve) => setTimeout(resolve, everyMs));
    op = await api.operations.getOperation({ name: op.name });
    onProgress(op);
  }
  return op;
}

/** One line on where an operation is: its status message (e.g. `retire: next: await`) and attempt. */
export function describeOperation(op: Operation): string {
  const meta = op.metadata ? anyUnpack(op.metadata, OperationMetadataSchema) : undefined;
  let text = meta?.statusMessage || (op.done ? "done" : "running");
  if (meta && meta.attempt > 1) text += ` (attempt ${meta.attempt})`;
  if (op.done && op.result.case === "error") {
    const { code, message } = op.result.value;
    text += ` — failed: ${codeName(code)} (${code}): ${message}`;
  } else if (op.done && op.result.case === "response") {
    const role = anyUnpack(op.result.value, LinkedRoleSchema);
    if (role) text += ` — role ${LinkedRole_State[role.state]}`;
  }
  return text;
}

/** The gRPC name of a status code: `PERMISSION_DENIED` for 7. */
export function codeName(code: Code): string {
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/**
 * What a refused call says, for a person: code, message, and from the rich
 * details the API's reason and the request id (quote it to the operators).
 */
export function describeError(err: unknown): string {
  const e = ConnectError.from(err);
  let text = `${codeName(e.code)} (${e.code}): ${e.rawMessage}`;
  if (e.cause instanceof TypeError) {
    // fetch() itself failed: no answer reached the page.
    text += "\nno answer: the server is unreachable, or it does not allow this page's origin (SLRGOV_CORS_ORIGINS)";
  }
  const [info] = e.findDetails(ErrorInfoSchema);
  if (info) text += `\nreason: ${info.reason}`;
  const [request] = e.findDetails(RequestInfoSchema);
  if (request?.requestId) text += `\nrequest id: ${request.requestId}`;
  return text;
}
