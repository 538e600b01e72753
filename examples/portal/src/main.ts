// The page: log in with a server URL and a bearer token, list the caller's
// instances and follow their changes live (WatchInstances), ensure or retire
// each one's linked role, and show any refusal.

import {
  connect,
  describeError,
  describeOperation,
  listAndWatch,
  pollOperation,
  LinkedRole_State,
  WatchInstancesResponse_ChangeType,
  type Api,
  type Instance,
  type WatchInstancesResponse,
} from "./api.js";

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;
const errorBox = $<HTMLParagraphElement>("#error");
const table = $<HTMLTableElement>("#instances");

function showError(err: unknown) {
  errorBox.textContent = describeError(err);
  errorBox.hidden = false;
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = "";
}

$<HTMLFormElement>("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  table.hidden = true;
  const server = $<HTMLInputElement>("#server").value;
  const token = $<HTMLInputElement>("#token").value.trim();
  const api = connect(server, token);
  // A second login stops following the first one's instances.
  following?.abort();
  const controller = new AbortController();
  following = controller;
  try {
    await listAndWatch(
      api,
      controller.signal,
      (instances) => render(api, instances),
      (change) => apply(api, change),
    );
  } catch (err) {
    showError(err);
  }
});

/** The watch of the current login. */
let following: AbortController | undefined;

/** A change seen by the watch: a new row, a row's new state, or a row gone. */
function apply(api: Api, change: WatchInstancesResponse) {
  const instance = change.instance;
  if (!instance) return;
  const existing = table.querySelector<HTMLTableRowElement>(`tbody tr[data-name="${CSS.escape(instance.name)}"]`);
  if (change.changeType === WatchInstancesResponse_ChangeType.DELETED) {
    existing?.remove();
  } else if (existing) {
    existing.querySelector("td.state")!.textContent = LinkedRole_State[instance.linkedRoleState];
  } else {
    table.tBodies[0].append(row(api, instance));
  }
}

function render(api: Api, instances: Instance[]) {
  const body = table.tBodies[0];
  body.replaceChildren(...instances.map((instance) => row(api, instance)));
  table.hidden = false;
}

function cell(className: string, text = ""): HTMLTableCellElement {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  return td;
}

function button(label: string, onClick: () => Promise<void>): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", async () => {
    clearError();
    b.disabled = true;
    try {
      await onClick();
    } catch (err) {
      showError(err);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

function row(api: Api, instance: Instance): HTMLTableRowElement {
  // The linked role of `accounts/A/instances/I` is `accounts/A/instances/I/linkedRole`.
  const roleName = `${instance.name}/linkedRole`;
  const state = cell("state", LinkedRole_State[instance.linkedRoleState]);
  const arn = cell("arn");
  const progress = cell("progress");

  const ensure = button("Ensure role", async () => {
    const role = await api.linkedRoles.ensureLinkedRole({ name: roleName, requestId: crypto.randomUUID() });
    state.textContent = LinkedRole_State[role.state];
    arn.textContent = role.roleArn;
  });

  const retire = button("Retire", async () => {
    // A request id makes a retried click the same operation, not a second one.
    const started = await api.linkedRoles.retireLinkedRole({ name: roleName, requestId: crypto.randomUUID() });
    state.textContent = LinkedRole_State[LinkedRole_State.DELETING];
    const done = await pollOperation(api, started, (op) => (progress.textContent = describeOperation(op)));
    const role = await api.linkedRoles.getLinkedRole({ name: roleName });
    state.textContent = LinkedRole_State[role.state];
    if (done.result.case !== "error") arn.textContent = "";
  });

  const actions = cell("actions");
  actions.append(ensure, retire);

  const tr = document.createElement("tr");
  tr.dataset.name = instance.name;
  tr.append(
    cell("name", instance.instanceAlias ? `${instance.instanceAlias}\n${instance.name}` : instance.name),
    cell("region", instance.region),
    state,
    arn,
    actions,
    progress,
  );
  return tr;
}
