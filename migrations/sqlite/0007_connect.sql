-- Amazon Connect as the source of truth: the same shape as
-- migrations/postgres/0007_connect.sql (read its comments). SQLite cannot
-- change a column's constraints: `workflows` is rebuilt.

ALTER TABLE instances ADD COLUMN connect_arn TEXT;
ALTER TABLE instances ADD COLUMN connect_status TEXT CHECK (connect_status IN
    ('CREATION_IN_PROGRESS', 'ACTIVE', 'CREATION_FAILED'));
ALTER TABLE instances ADD COLUMN service_role_arn TEXT;
ALTER TABLE instances ADD COLUMN identity_management_type TEXT;
ALTER TABLE instances ADD COLUMN observed_state TEXT NOT NULL DEFAULT 'UNOBSERVED'
    CHECK (observed_state IN ('UNOBSERVED', 'OBSERVED', 'VANISHED'));
ALTER TABLE instances ADD COLUMN last_seen_time TEXT;
ALTER TABLE instances ADD COLUMN sync_time TEXT;

CREATE INDEX instances_connect_status_idx ON instances (connect_status, account_id, instance_id);
CREATE INDEX instances_observed_idx ON instances (observed_state, account_id, instance_id);
CREATE INDEX instances_created_idx ON instances (instance_create_time, account_id, instance_id);
CREATE INDEX instances_service_role_idx ON instances (service_role_arn)
    WHERE service_role_arn IS NOT NULL;

ALTER TABLE linked_roles ADD COLUMN restored INTEGER NOT NULL DEFAULT 0;

CREATE TABLE workflows_v2 (
    workflow_id    TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('ensure', 'retire', 'delete', 'sync')),
    account_id     TEXT NOT NULL,
    instance_id    TEXT,
    target         TEXT NOT NULL,
    inputs         TEXT NOT NULL,
    state          TEXT NOT NULL,
    step           TEXT NOT NULL,
    phase          TEXT NOT NULL CHECK (phase IN ('RUNNING', 'UNWINDING', 'SUCCEEDED', 'FAILED')),
    attempt        INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    not_before     TEXT NOT NULL,
    error          TEXT,
    output         TEXT,
    principal      TEXT NOT NULL,
    request_id     TEXT,
    status_message TEXT NOT NULL,
    lease_owner    TEXT,
    lease_until    TEXT,
    create_time    TEXT NOT NULL,
    update_time    TEXT NOT NULL,
    end_time       TEXT
) STRICT;

INSERT INTO workflows_v2 (workflow_id, kind, account_id, instance_id, target, inputs, state, step,
    phase, attempt, not_before, error, output, principal, request_id, status_message,
    lease_owner, lease_until, create_time, update_time, end_time)
SELECT workflow_id, kind, account_id, instance_id,
    'accounts/' || account_id || '/instances/' || instance_id
        || CASE WHEN kind = 'delete' THEN '' ELSE '/linkedRole' END,
    inputs, state, step, phase, attempt, not_before, error, output, principal, request_id,
    status_message, lease_owner, lease_until, create_time, update_time, end_time
FROM workflows;

DROP TABLE workflows;
ALTER TABLE workflows_v2 RENAME TO workflows;

CREATE INDEX workflows_due_idx ON workflows (not_before)
    WHERE phase IN ('RUNNING', 'UNWINDING');
CREATE INDEX workflows_account_idx ON workflows (account_id, workflow_id);
CREATE UNIQUE INDEX workflows_running_idx ON workflows (account_id, instance_id)
    WHERE phase IN ('RUNNING', 'UNWINDING');
CREATE UNIQUE INDEX workflows_running_sync_idx ON workflows (account_id)
    WHERE kind = 'sync' AND target <> 'accounts/-' AND phase IN ('RUNNING', 'UNWINDING');
CREATE INDEX workflows_sync_idx ON workflows (account_id, create_time) WHERE kind = 'sync';
