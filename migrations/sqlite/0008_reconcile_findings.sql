-- The reconciler's passes and their findings: the same shape as
-- migrations/postgres/0008_reconcile_findings.sql (read its comments).
-- SQLite cannot change a CHECK constraint: `workflows` is rebuilt (as in
-- 0007), with every index it had; it has no triggers and no table refers
-- to it. SQLite has no row-level security: the service's own scope checks
-- (and the scope clause of every list) keep tenants apart.

CREATE TABLE workflows_v3 (
    workflow_id    TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('ensure', 'retire', 'delete', 'sync', 'reconcile')),
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

INSERT INTO workflows_v3 (workflow_id, kind, account_id, instance_id, target, inputs, state, step,
    phase, attempt, not_before, error, output, principal, request_id, status_message,
    lease_owner, lease_until, create_time, update_time, end_time)
SELECT workflow_id, kind, account_id, instance_id, target, inputs, state, step,
    phase, attempt, not_before, error, output, principal, request_id, status_message,
    lease_owner, lease_until, create_time, update_time, end_time
FROM workflows;

DROP TABLE workflows;
ALTER TABLE workflows_v3 RENAME TO workflows;

-- Every index of workflows as 0006 and 0007 left them ...
CREATE INDEX workflows_due_idx ON workflows (not_before)
    WHERE phase IN ('RUNNING', 'UNWINDING');
CREATE INDEX workflows_account_idx ON workflows (account_id, workflow_id);
CREATE UNIQUE INDEX workflows_running_idx ON workflows (account_id, instance_id)
    WHERE phase IN ('RUNNING', 'UNWINDING');
CREATE UNIQUE INDEX workflows_running_sync_idx ON workflows (account_id)
    WHERE kind = 'sync' AND target <> 'accounts/-' AND phase IN ('RUNNING', 'UNWINDING');
CREATE INDEX workflows_sync_idx ON workflows (account_id, create_time) WHERE kind = 'sync';
-- ... and the reconciler's.
CREATE UNIQUE INDEX workflows_running_reconcile_idx ON workflows (account_id)
    WHERE kind = 'reconcile' AND phase IN ('RUNNING', 'UNWINDING');
CREATE INDEX workflows_reconcile_idx ON workflows (account_id, create_time)
    WHERE kind = 'reconcile';

CREATE TABLE findings (
    account_id      TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    finding_id      TEXT NOT NULL,
    code            TEXT NOT NULL CHECK (code IN ('ROLE_MISSING', 'TRUST_POLICY_MISMATCH',
        'PATH_MISMATCH', 'PERMISSION_MISSING', 'PERMISSION_CONDITIONAL', 'DESCRIPTION_DRIFT',
        'ROLE_UNUSED', 'LEGACY_INSTANCE_WITHOUT_ROLE', 'ROLE_MISMATCH', 'SERVICE_ROLE_MISMATCH',
        'ORPHAN_ROLE', 'VANISHED_INSTANCE')),
    severity        TEXT NOT NULL CHECK (severity IN ('INFO', 'WARNING', 'ERROR')),
    target          TEXT NOT NULL,
    subject         TEXT NOT NULL DEFAULT '',
    message         TEXT NOT NULL,
    first_seen_time TEXT NOT NULL,
    last_seen_time  TEXT NOT NULL,
    resolve_time    TEXT,
    PRIMARY KEY (account_id, finding_id)
) STRICT;

CREATE INDEX findings_code_idx ON findings (code, account_id, finding_id);
CREATE INDEX findings_severity_idx ON findings (severity, account_id, finding_id);
CREATE INDEX findings_open_idx ON findings (account_id, finding_id)
    WHERE resolve_time IS NULL;
CREATE INDEX findings_open_target_idx ON findings (account_id, target)
    WHERE resolve_time IS NULL;
CREATE INDEX findings_open_code_idx ON findings (account_id, code, severity)
    WHERE resolve_time IS NULL;
