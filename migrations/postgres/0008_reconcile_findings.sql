-- The reconciler: a background pass per account (workflow kind
-- `reconcile`) that syncs from Amazon Connect, inspects every instance's
-- role within the IAM read budget and stores what it found. Findings are
-- level-based: each pass states what it sees in the scope it looked at (one
-- target, or one code in the account); a finding it sees again keeps its
-- first seen time and moves its last seen time, one it no longer sees is
-- resolved, one seen again after that is opened again under the same id.
-- A finding's id is a digest of its target, code and subject (the domain's
-- `finding_id`), so the same problem is one row across passes.
--
-- Findings are tenant rows like every other table: row-level security
-- scopes them by account (the policy of 0005), and they go with their
-- account. The service role's DML grants come from the default privileges
-- of deploy/postgres/roles.sql; nothing to grant here.

ALTER TABLE workflows DROP CONSTRAINT workflows_kind_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_kind_check
    CHECK (kind IN ('ensure', 'retire', 'delete', 'sync', 'reconcile'));

-- One running reconcile pass per account (a second start joins it).
CREATE UNIQUE INDEX workflows_running_reconcile_idx ON workflows (account_id)
    WHERE kind = 'reconcile' AND phase IN ('RUNNING', 'UNWINDING');
-- The newest pass of each account (the reconciler's schedule).
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
    -- An instance's resource name, or a role's ARN (an orphan role).
    target          TEXT NOT NULL,
    -- `action resource` of a permission finding, empty otherwise.
    subject         TEXT NOT NULL DEFAULT '',
    message         TEXT NOT NULL,
    first_seen_time TIMESTAMPTZ NOT NULL,
    last_seen_time  TIMESTAMPTZ NOT NULL,
    -- NULL while open.
    resolve_time    TIMESTAMPTZ,
    PRIMARY KEY (account_id, finding_id)
);

-- ListFindings filtered by code or severity, across accounts, in
-- (account_id, finding_id) order.
CREATE INDEX findings_code_idx ON findings (code, account_id, finding_id);
CREATE INDEX findings_severity_idx ON findings (severity, account_id, finding_id);
-- ListFindings of the open ones (`resolved = false`).
CREATE INDEX findings_open_idx ON findings (account_id, finding_id)
    WHERE resolve_time IS NULL;
-- A pass's scope: the open findings of one target, or of one code (and the
-- fleet summary's and the gauges' counts by code and severity).
CREATE INDEX findings_open_target_idx ON findings (account_id, target)
    WHERE resolve_time IS NULL;
CREATE INDEX findings_open_code_idx ON findings (account_id, code, severity)
    WHERE resolve_time IS NULL;

ALTER TABLE findings ENABLE ROW LEVEL SECURITY;
ALTER TABLE findings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON findings
    USING (slrgov_account_visible(account_id));
