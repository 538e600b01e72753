-- The audit trail: one row per change (or refused or failed mutation),
-- written in the same transaction as the change it records, with every
-- AWS call the change caused. Append-only: the triggers refuse UPDATE and
-- DELETE. No foreign key to accounts: the trail outlives the account.

CREATE TABLE audit_events (
    -- A UUIDv7: time-ordered, so keyset pages by id are pages by time.
    event_id   TEXT PRIMARY KEY,
    account_id TEXT NOT NULL CHECK (length(account_id) = 12 AND account_id NOT GLOB '*[^0-9]*'),
    time       TEXT NOT NULL,
    principal  TEXT NOT NULL,
    method     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    request_id TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    -- [{"service","operation","outcome","aws_request_id"}]
    aws_calls  TEXT NOT NULL
);

-- ListAuditEvents: one account, newest first.
CREATE INDEX audit_events_account_idx ON audit_events (account_id, event_id DESC);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only (UPDATE refused)');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only (DELETE refused)');
END;
