-- Batches and cancellation: the same shape as
-- migrations/postgres/0009_batches.sql (read its comments): workflows.kind
-- gains 'batch_ensure', and workflows gain `cancel_requested` (0 or 1).
-- SQLite cannot change a CHECK constraint: `workflows` is rebuilt (as in
-- 0007 and 0008), with every index it had after 0008; it has no triggers
-- and no table refers to it.

CREATE TABLE workflows_v4 (
    workflow_id      TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('ensure', 'retire', 'delete', 'sync', 'reconcile',
        'batch_ensure')),
    account_id       TEXT NOT NULL,
    instance_id      TEXT,
    target           TEXT NOT NULL,
    inputs           TEXT NOT NULL,
    state            TEXT NOT NULL,
    step             TEXT NOT NULL,
    phase            TEXT NOT NULL CHECK (phase IN ('RUNNING', 'UNWINDING', 'SUCCEEDED', 'FAILED')),
    attempt          INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    not_before       TEXT NOT NULL,
    error            TEXT,
    output           TEXT,
    principal        TEXT NOT NULL,
    request_id       TEXT,
    status_message   TEXT NOT NULL,
    lease_owner      TEXT,
    lease_until      TEXT,
    create_time      TEXT NOT NULL,
    update_time      TEXT NOT NULL,
    end_time         TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1))
) STRICT;

INSERT INTO workflows_v4 (workflow_id, kind, account_id, instance_id, target, inputs, state, step,
    phase, attempt, not_before, error, output, principal, request_id, status_message,
    lease_owner, lease_until, create_time, update_time, end_time, cancel_requested)
SELECT workflow_id, kind, account_id, instance_id, target, inputs, state, step,
    phase, attempt, not_before, error, output, principal, request_id, status_message,
    lease_owner, lease_until, create_time, update_time, end_time, 0
FROM workflows;

DROP TABLE workflows;
ALTER TABLE workflows_v4 RENAME TO workflows;

-- Every index of workflows as 0006, 0007 and 0008 left them.
CREATE INDEX workflows_due_idx ON workflows (not_before)
    WHERE phase IN ('RUNNING', 'UNWINDING');
CREATE INDEX workflows_account_idx ON workflows (account_id, workflow_id);
CREATE UNIQUE INDEX workflows_running_idx ON workflows (account_id, instance_id)
    WHERE phase IN ('RUNNING', 'UNWINDING');
CREATE UNIQUE INDEX workflows_running_sync_idx ON workflows (account_id)
    WHERE kind = 'sync' AND target <> 'accounts/-' AND phase IN ('RUNNING', 'UNWINDING');
CREATE INDEX workflows_sync_idx ON workflows (account_id, create_time) WHERE kind = 'sync';
CREATE UNIQUE INDEX workflows_running_reconcile_idx ON workflows (account_id)
    WHERE kind = 'reconcile' AND phase IN ('RUNNING', 'UNWINDING');
CREATE INDEX workflows_reconcile_idx ON workflows (account_id, create_time)
    WHERE kind = 'reconcile';
