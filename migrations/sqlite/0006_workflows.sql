-- Workflows as stored step machines: the same shape as
-- migrations/postgres/0006_workflows.sql (read its comments); timestamps
-- are RFC 3339 text, JSON is text.

CREATE TABLE workflows (
    workflow_id    TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('ensure', 'retire', 'delete')),
    account_id     TEXT NOT NULL,
    instance_id    TEXT NOT NULL,
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

CREATE INDEX workflows_due_idx ON workflows (not_before)
    WHERE phase IN ('RUNNING', 'UNWINDING');
CREATE INDEX workflows_account_idx ON workflows (account_id, workflow_id);
CREATE UNIQUE INDEX workflows_running_idx ON workflows (account_id, instance_id)
    WHERE phase IN ('RUNNING', 'UNWINDING');

INSERT INTO workflows (workflow_id, kind, account_id, instance_id, inputs, state, step, phase,
    attempt, not_before, error, output, principal, request_id, status_message, lease_owner,
    lease_until, create_time, update_time, end_time)
SELECT o.operation_id, o.verb, o.account_id, o.instance_id,
    json_object('role_name', COALESCE(r.role_name, '')),
    CASE
        WHEN o.done AND o.error IS NULL THEN '{"state":"gone"}'
        WHEN o.done THEN '{"state":"claimed"}'
        WHEN r.deletion_task_id IS NOT NULL
            THEN json_object('state', 'submitted', 'task_id', r.deletion_task_id)
        ELSE '{"state":"claimed"}'
    END,
    CASE
        WHEN o.done AND o.error IS NULL THEN 'record'
        WHEN o.done THEN 'submit'
        WHEN r.deletion_task_id IS NOT NULL THEN 'await'
        ELSE 'submit'
    END,
    CASE WHEN NOT o.done THEN 'RUNNING' WHEN o.error IS NULL THEN 'SUCCEEDED' ELSE 'FAILED' END,
    0, o.next_attempt, o.error,
    CASE WHEN o.done AND o.error IS NULL THEN COALESCE(o.response, 'null') END,
    o.principal, o.request_id, o.status_message, NULL, NULL, o.create_time, o.update_time,
    o.end_time
FROM operations o
LEFT JOIN linked_roles r ON r.account_id = o.account_id AND r.instance_id = o.instance_id;

INSERT INTO workflows (workflow_id, kind, account_id, instance_id, inputs, state, step, phase,
    attempt, not_before, principal, status_message, create_time, update_time)
SELECT lower(hex(randomblob(16))), 'ensure', r.account_id, r.instance_id,
    json_object('suffix', r.suffix, 'description', NULL),
    '{"state":"planned"}', 'create', 'RUNNING', 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    'service:migration', 'ensure: resumed after the upgrade', r.update_time,
    strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
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

CREATE TABLE request_ids_v2 (
    account_id  TEXT NOT NULL,
    principal   TEXT NOT NULL DEFAULT '',
    request_id  TEXT NOT NULL,
    method      TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    response    TEXT,
    workflow_id TEXT,
    create_time TEXT NOT NULL,
    PRIMARY KEY (account_id, principal, request_id)
) STRICT;

INSERT INTO request_ids_v2 (account_id, principal, request_id, method, fingerprint, response,
    create_time)
SELECT account_id, '', request_id, method, fingerprint, response, create_time FROM request_ids;

DROP TABLE request_ids;
ALTER TABLE request_ids_v2 RENAME TO request_ids;
CREATE INDEX request_ids_create_time_idx ON request_ids (create_time);
