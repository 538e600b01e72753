-- The registry: accounts, their Connect instances, idempotency records and
-- the service's own keys. Same shape as migrations/postgres; timestamps are
-- RFC 3339 text, JSON is text.

CREATE TABLE accounts (
    account_id      TEXT PRIMARY KEY CHECK (length(account_id) = 12 AND account_id NOT GLOB '*[^0-9]*'),
    display_name    TEXT NOT NULL,
    partition       TEXT NOT NULL CHECK (partition IN ('aws', 'aws-us-gov', 'aws-cn')),
    access_role_arn TEXT,
    -- A secret: read only to call STS, never returned.
    external_id     TEXT,
    revision        INTEGER NOT NULL CHECK (revision > 0),
    create_time     TEXT NOT NULL,
    update_time     TEXT NOT NULL
) STRICT;

CREATE TABLE instances (
    account_id           TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE RESTRICT,
    instance_id          TEXT NOT NULL,
    instance_alias       TEXT,
    region               TEXT NOT NULL,
    instance_create_time TEXT,
    features             TEXT NOT NULL,
    linked_role_state    TEXT NOT NULL DEFAULT 'ABSENT' CHECK (linked_role_state IN
        ('ABSENT', 'CREATING', 'ACTIVE', 'DELETING', 'DELETED', 'DELETION_FAILED')),
    revision             INTEGER NOT NULL CHECK (revision > 0),
    create_time          TEXT NOT NULL,
    update_time          TEXT NOT NULL,
    PRIMARY KEY (account_id, instance_id)
) STRICT;

CREATE INDEX instances_region_idx ON instances (region, account_id, instance_id);
CREATE INDEX instances_state_idx ON instances (linked_role_state, account_id, instance_id);

CREATE TABLE request_ids (
    account_id  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    method      TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    response    TEXT,
    create_time TEXT NOT NULL,
    PRIMARY KEY (account_id, request_id)
) STRICT;

CREATE INDEX request_ids_create_time_idx ON request_ids (create_time);

CREATE TABLE service_keys (
    name        TEXT PRIMARY KEY,
    key         BLOB NOT NULL,
    create_time TEXT NOT NULL
) STRICT;
