-- Workflows as stored step machines. One table holds every workflow
-- (ensure, retire, delete; later sync and batch): its saved inputs, its
-- typed state (one JSON column, decided by the Rust code), the step that
-- runs next, the attempt of that step, when it may run again, and who
-- holds it. A retirement's row is also the API's Operation
-- (`operations/{workflow_id}`).
--
-- It replaces the `operations` table (whose rows move here, keeping their
-- ids) and the workflow columns of `linked_roles` (suffix, lease_owner,
-- lease_expires, attempts): an ensure that was in flight becomes an
-- ensure workflow that resumes at its create step with the suffix it had
-- planned. Old replicas cannot drive the new rows: upgrade with them
-- stopped (docs/architecture.md, "Migrations").
--
-- The request ids of every RPC become one rule: they are kept per caller
-- (principal) and account, hold the response or the workflow the request
-- started, and expire (SLRGOV_REQUEST_ID_TTL) through a sweep.

-- Row-level security applies to the service's own role: read every
-- account's rows while moving them.
SELECT set_config('slrgov.scope', '*', true);

CREATE TABLE workflows (
    workflow_id    TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('ensure', 'retire', 'delete')),
    account_id     TEXT NOT NULL,
    instance_id    TEXT NOT NULL,
    inputs         JSONB NOT NULL,
    state          JSONB NOT NULL,
    step           TEXT NOT NULL,
    phase          TEXT NOT NULL CHECK (phase IN ('RUNNING', 'UNWINDING', 'SUCCEEDED', 'FAILED')),
    attempt        INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    not_before     TIMESTAMPTZ NOT NULL,
    error          JSONB,
    output         JSONB,
    principal      TEXT NOT NULL,
    request_id     TEXT,
    status_message TEXT NOT NULL,
    lease_owner    TEXT,
    lease_until    TIMESTAMPTZ,
    create_time    TIMESTAMPTZ NOT NULL,
    update_time    TIMESTAMPTZ NOT NULL,
    end_time       TIMESTAMPTZ
);

-- The worker's claim: running workflows that are due.
CREATE INDEX workflows_due_idx ON workflows (not_before)
    WHERE phase IN ('RUNNING', 'UNWINDING');
-- ListOperations, newest last, per account.
CREATE INDEX workflows_account_idx ON workflows (account_id, workflow_id);
-- At most one running workflow per instance: an ensure and a retirement
-- of the same role never run at once.
CREATE UNIQUE INDEX workflows_running_idx ON workflows (account_id, instance_id)
    WHERE phase IN ('RUNNING', 'UNWINDING');

ALTER TABLE workflows ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON workflows
    USING (slrgov_account_visible(account_id));

-- Operations become retire/delete workflows: running ones resume at their
-- submit step, or at their await step when IAM's deletion task is known.
INSERT INTO workflows (workflow_id, kind, account_id, instance_id, inputs, state, step, phase,
    attempt, not_before, error, output, principal, request_id, status_message, lease_owner,
    lease_until, create_time, update_time, end_time)
SELECT o.operation_id, o.verb, o.account_id, o.instance_id,
    jsonb_build_object('role_name', COALESCE(r.role_name, '')),
    CASE
        WHEN o.done AND o.error IS NULL THEN '{"state": "gone"}'::jsonb
        WHEN o.done THEN '{"state": "claimed"}'::jsonb
        WHEN r.deletion_task_id IS NOT NULL
            THEN jsonb_build_object('state', 'submitted', 'task_id', r.deletion_task_id)
        ELSE '{"state": "claimed"}'::jsonb
    END,
    CASE
        WHEN o.done AND o.error IS NULL THEN 'record'
        WHEN o.done THEN 'submit'
        WHEN r.deletion_task_id IS NOT NULL THEN 'await'
        ELSE 'submit'
    END,
    CASE WHEN NOT o.done THEN 'RUNNING' WHEN o.error IS NULL THEN 'SUCCEEDED' ELSE 'FAILED' END,
    0, o.next_attempt, o.error,
    CASE WHEN o.done AND o.error IS NULL THEN COALESCE(o.response, 'null'::jsonb) END,
    o.principal, o.request_id, o.status_message, NULL, NULL, o.create_time, o.update_time,
    o.end_time
FROM operations o
LEFT JOIN linked_roles r ON r.account_id = o.account_id AND r.instance_id = o.instance_id;

-- Ensures in flight become ensure workflows at their create step, with the
-- suffix they planned (the description they were given was not kept).
INSERT INTO workflows (workflow_id, kind, account_id, instance_id, inputs, state, step, phase,
    attempt, not_before, principal, status_message, create_time, update_time)
SELECT gen_random_uuid()::text, 'ensure', r.account_id, r.instance_id,
    jsonb_build_object('suffix', r.suffix, 'description', NULL),
    '{"state": "planned"}'::jsonb, 'create', 'RUNNING', 0, now(),
    'service:migration', 'ensure: resumed after the upgrade', r.update_time, now()
FROM linked_roles r
WHERE r.state = 'CREATING' AND r.suffix IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM workflows w WHERE w.account_id = r.account_id
        AND w.instance_id = r.instance_id AND w.phase IN ('RUNNING', 'UNWINDING'));

DROP TABLE operations;

DROP INDEX linked_roles_lease_idx;
ALTER TABLE linked_roles DROP COLUMN suffix;
ALTER TABLE linked_roles DROP COLUMN lease_owner;
ALTER TABLE linked_roles DROP COLUMN lease_expires;
ALTER TABLE linked_roles DROP COLUMN attempts;

-- Request ids per caller and account; rows from before this migration have
-- no principal and only expire.
ALTER TABLE request_ids ADD COLUMN principal TEXT NOT NULL DEFAULT '';
ALTER TABLE request_ids ADD COLUMN workflow_id TEXT;
ALTER TABLE request_ids DROP CONSTRAINT request_ids_pkey;
ALTER TABLE request_ids ADD PRIMARY KEY (account_id, principal, request_id);
