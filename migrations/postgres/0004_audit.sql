-- The audit trail: one row per change (or refused or failed mutation),
-- written in the same transaction as the change it records, with every
-- AWS call the change caused. Append-only: the triggers below refuse any
-- UPDATE, DELETE or TRUNCATE, so the service (or anyone with its role)
-- cannot rewrite history. No foreign key to accounts: the trail outlives
-- the account it describes.

CREATE TABLE audit_events (
    -- A UUIDv7: time-ordered, so keyset pages by id are pages by time.
    event_id   TEXT PRIMARY KEY,
    account_id TEXT NOT NULL CHECK (account_id ~ '^[0-9]{12}$'),
    time       TIMESTAMPTZ NOT NULL,
    principal  TEXT NOT NULL,
    method     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    request_id TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    -- [{"service","operation","outcome","aws_request_id"}]
    aws_calls  JSONB NOT NULL
);

-- ListAuditEvents: one account, newest first.
CREATE INDEX audit_events_account_idx ON audit_events (account_id, event_id DESC);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
