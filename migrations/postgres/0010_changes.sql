-- The change log behind WatchInstances and WatchLinkedRoles. Every change
-- of an instance record or of a linked-role record appends a row to
-- `changes` in the transaction that makes it: database triggers, so no
-- write path (the API's, the workflows', discovery's) can forget one. A
-- change is an insert, a delete, or an update that moved the revision:
-- the revision moves on every change a caller can see (AIP-154), and only
-- then, so a sync that only stamps `sync_time` appends nothing. Watchers
-- read the log after their cursor, joined to the resource as it is now.
--
-- Order: a cursor is `(tx, seq)`. `seq` alone is not commit order (a
-- transaction that took seq 10 may commit after the one that took seq 11,
-- and a watcher that read 11 would never see 10). `tx` is the writing
-- transaction's id (`xid8`, never wraps); readers take only rows of
-- transactions older than every transaction still running
-- (`tx < pg_snapshot_xmin(pg_current_snapshot())`), so that every row
-- before a cursor has been read by the time the cursor passes it.
--
-- Retention: a sweep (workers) removes the oldest rows and raises
-- `change_floor`, the newest position it removed: a resume token below it
-- is expired (OUT_OF_RANGE / RESUME_TOKEN_EXPIRED). The floor is not tenant
-- data (like service_keys: no row-level security); `changes` is, with the
-- policy of 0005. The triggers' inserts run in the writer's scope, which
-- holds the row's account (the writer just wrote it).
--
-- Each trigger also sends `NOTIFY slrgov_changes` (Postgres sends one per
-- transaction: identical notifications are folded), so the watchers of
-- every replica wake up at once instead of polling.
--
-- Nothing here touches existing rows: the log starts empty, at floor (0, 0).

CREATE TABLE changes (
    seq         BIGSERIAL PRIMARY KEY,
    tx          XID8 NOT NULL DEFAULT pg_current_xact_id(),
    account_id  TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('instance', 'linked_role')),
    op          TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    change_time TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Reads in log order; the sweep.
CREATE INDEX changes_order_idx ON changes (tx, seq);
CREATE INDEX changes_time_idx ON changes (change_time);

ALTER TABLE changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON changes
    USING (slrgov_account_visible(account_id));

-- One row: the newest (tx, seq) the sweep removed.
CREATE TABLE change_floor (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    tx  BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
INSERT INTO change_floor (tx, seq) VALUES (0, 0);

-- `TG_ARGV[0]` is the kind of resource.
CREATE FUNCTION changes_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO changes (account_id, instance_id, kind, op)
            VALUES (OLD.account_id, OLD.instance_id, TG_ARGV[0], 'delete');
    ELSE
        INSERT INTO changes (account_id, instance_id, kind, op)
            VALUES (NEW.account_id, NEW.instance_id, TG_ARGV[0], lower(TG_OP));
    END IF;
    PERFORM pg_notify('slrgov_changes', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER instances_changes AFTER INSERT OR DELETE ON instances
    FOR EACH ROW EXECUTE FUNCTION changes_append('instance');
CREATE TRIGGER instances_changes_update AFTER UPDATE ON instances
    FOR EACH ROW WHEN (OLD.revision IS DISTINCT FROM NEW.revision)
    EXECUTE FUNCTION changes_append('instance');

-- A linked role's revision moves on every change of what GetLinkedRole
-- shows; leases and attempts live on the workflows (0006), not here.
CREATE TRIGGER linked_roles_changes AFTER INSERT OR DELETE ON linked_roles
    FOR EACH ROW EXECUTE FUNCTION changes_append('linked_role');
CREATE TRIGGER linked_roles_changes_update AFTER UPDATE ON linked_roles
    FOR EACH ROW WHEN (OLD.revision IS DISTINCT FROM NEW.revision)
    EXECUTE FUNCTION changes_append('linked_role');
