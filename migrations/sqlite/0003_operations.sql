-- Long-running operations (retirements; deletions of an instance with its
-- role). A row is both the API's Operation and the background work item:
-- replicas claim due rows with a lease (SQLite: BEGIN IMMEDIATE), so the
-- work is shared and a dead replica's work is taken over when its lease
-- runs out.

CREATE TABLE operations (
    operation_id   TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL,
    instance_id    TEXT NOT NULL,
    verb           TEXT NOT NULL CHECK (verb IN ('retire', 'delete')),
    done           INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    response       TEXT,
    principal      TEXT NOT NULL,
    request_id     TEXT,
    status_message TEXT NOT NULL,
    lease_owner    TEXT,
    lease_expires  TEXT,
    next_attempt   TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    create_time    TEXT NOT NULL,
    end_time       TEXT,
    update_time    TEXT NOT NULL
) STRICT;

CREATE INDEX operations_due_idx ON operations (next_attempt) WHERE done = 0;
CREATE INDEX operations_account_idx ON operations (account_id, operation_id);
-- At most one running operation per instance.
CREATE UNIQUE INDEX operations_running_idx ON operations (account_id, instance_id) WHERE done = 0;
