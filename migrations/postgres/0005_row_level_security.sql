-- Row-level security: the second wall behind the service's own scope
-- checks. Every tenant table shows (and accepts) only rows of the accounts
-- in the transaction's scope, `slrgov.scope`, which the service sets in the
-- same round trip as the work: either in the statement that begins the
-- transaction (`BEGIN; SELECT set_config('slrgov.scope', ..., true)`) or,
-- for a single-statement read, in a LATERAL subquery of that statement.
-- The value is `*` (every account: an all-accounts caller or the
-- background workers, logged where it is made) or a comma-separated list
-- of 12-digit account ids. Unset or empty: no rows at all.
--
-- FORCE makes the policies apply to the tables' owner too, which is the
-- role the service connects as; the service refuses to start as a
-- superuser or BYPASSRLS role (they skip every policy) unless told to.

CREATE FUNCTION slrgov_account_visible(account TEXT) RETURNS BOOLEAN
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT COALESCE(current_setting('slrgov.scope', true), '') = '*'
        OR account = ANY (string_to_array(NULLIF(current_setting('slrgov.scope', true), ''), ','))
$$;

ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON accounts
    USING (slrgov_account_visible(account_id));

ALTER TABLE instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE instances FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON instances
    USING (slrgov_account_visible(account_id));

ALTER TABLE linked_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE linked_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON linked_roles
    USING (slrgov_account_visible(account_id));

ALTER TABLE operations ENABLE ROW LEVEL SECURITY;
ALTER TABLE operations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON operations
    USING (slrgov_account_visible(account_id));

ALTER TABLE request_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE request_ids FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON request_ids
    USING (slrgov_account_visible(account_id));

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON audit_events
    USING (slrgov_account_visible(account_id));
