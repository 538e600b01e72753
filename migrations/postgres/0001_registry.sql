-- The registry: accounts, their Connect instances, idempotency records and
-- the service's own keys. Every tenant table carries account_id, so that
-- row-level security can scope it by account.

CREATE TABLE accounts (
    account_id      TEXT PRIMARY KEY CHECK (account_id ~ '^[0-9]{12}$'),
    display_name    TEXT NOT NULL,
    partition       TEXT NOT NULL CHECK (partition IN ('aws', 'aws-us-gov', 'aws-cn')),
    access_role_arn TEXT,
    -- A secret: read only to call STS, never returned.
    external_id     TEXT,
    revision        BIGINT NOT NULL CHECK (revision > 0),
    create_time     TIMESTAMPTZ NOT NULL,
    update_time     TIMESTAMPTZ NOT NULL
);

CREATE TABLE instances (
    account_id           TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE RESTRICT,
    instance_id          TEXT NOT NULL,
    instance_alias       TEXT,
    region               TEXT NOT NULL,
    instance_create_time TIMESTAMPTZ,
    features             JSONB NOT NULL,
    linked_role_state    TEXT NOT NULL DEFAULT 'ABSENT' CHECK (linked_role_state IN
        ('ABSENT', 'CREATING', 'ACTIVE', 'DELETING', 'DELETED', 'DELETION_FAILED')),
    revision             BIGINT NOT NULL CHECK (revision > 0),
    create_time          TIMESTAMPTZ NOT NULL,
    update_time          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, instance_id)
);

-- ListInstances with a region or state filter across accounts.
CREATE INDEX instances_region_idx ON instances (region, account_id, instance_id);
CREATE INDEX instances_state_idx ON instances (linked_role_state, account_id, instance_id);

-- AIP-155 request ids, kept per account and written in the same
-- transaction as the work they guard.
CREATE TABLE request_ids (
    account_id  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    method      TEXT NOT NULL,
    fingerprint BYTEA NOT NULL,
    response    JSONB,
    create_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, request_id)
);

CREATE INDEX request_ids_create_time_idx ON request_ids (create_time);

-- Keys shared by every replica (e.g. the page-token MAC key): not tenant
-- data.
CREATE TABLE service_keys (
    name        TEXT PRIMARY KEY,
    key         BYTEA NOT NULL,
    create_time TIMESTAMPTZ NOT NULL
);
