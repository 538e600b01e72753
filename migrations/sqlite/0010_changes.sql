-- The change log behind WatchInstances and WatchLinkedRoles: the same
-- shape as migrations/postgres/0010_changes.sql (read its comments). Every
-- insert, delete, and update that moved the revision of an instance or a
-- linked-role record appends a row in the same transaction (triggers).
--
-- SQLite serializes writers (every write transaction begins IMMEDIATE), so
-- `seq` is commit order and `tx` is always 0; AUTOINCREMENT keeps `seq`
-- from ever being reused after the sweep empties the table (a reused seq
-- could fall below the floor). Times are RFC 3339 text like every other
-- column (milliseconds: SQLite's clock has no finer precision).
--
-- No row-level security here and no NOTIFY: the store's own scope clause
-- bounds every read, and the store polls the log's newest seq for its
-- change signal.

CREATE TABLE changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    tx          INTEGER NOT NULL DEFAULT 0,
    account_id  TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('instance', 'linked_role')),
    op          TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    change_time TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
) STRICT;

CREATE INDEX changes_order_idx ON changes (tx, seq);
CREATE INDEX changes_time_idx ON changes (change_time);

-- One row: the newest (tx, seq) the sweep removed.
CREATE TABLE change_floor (
    one INTEGER PRIMARY KEY DEFAULT 1 CHECK (one = 1),
    tx  INTEGER NOT NULL,
    seq INTEGER NOT NULL
) STRICT;
INSERT INTO change_floor (tx, seq) VALUES (0, 0);

CREATE TRIGGER instances_changes_insert AFTER INSERT ON instances
BEGIN
    INSERT INTO changes (account_id, instance_id, kind, op)
        VALUES (NEW.account_id, NEW.instance_id, 'instance', 'insert');
END;
CREATE TRIGGER instances_changes_update AFTER UPDATE ON instances
    WHEN OLD.revision IS NOT NEW.revision
BEGIN
    INSERT INTO changes (account_id, instance_id, kind, op)
        VALUES (NEW.account_id, NEW.instance_id, 'instance', 'update');
END;
CREATE TRIGGER instances_changes_delete AFTER DELETE ON instances
BEGIN
    INSERT INTO changes (account_id, instance_id, kind, op)
        VALUES (OLD.account_id, OLD.instance_id, 'instance', 'delete');
END;

CREATE TRIGGER linked_roles_changes_insert AFTER INSERT ON linked_roles
BEGIN
    INSERT INTO changes (account_id, instance_id, kind, op)
        VALUES (NEW.account_id, NEW.instance_id, 'linked_role', 'insert');
END;
CREATE TRIGGER linked_roles_changes_update AFTER UPDATE ON linked_roles
    WHEN OLD.revision IS NOT NEW.revision
BEGIN
    INSERT INTO changes (account_id, instance_id, kind, op)
        VALUES (NEW.account_id, NEW.instance_id, 'linked_role', 'update');
END;
CREATE TRIGGER linked_roles_changes_delete AFTER DELETE ON linked_roles
BEGIN
    INSERT INTO changes (account_id, instance_id, kind, op)
        VALUES (OLD.account_id, OLD.instance_id, 'linked_role', 'delete');
END;
