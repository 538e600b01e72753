-- The linked role of each instance, and the progress of the workflow that
-- ensures it: the row is the saga's log. The planned suffix is written
-- before CreateServiceLinkedRole, so that a resumed attempt asks IAM for
-- the same name; the lease says which process is working on it.

CREATE TABLE linked_roles (
    account_id       TEXT NOT NULL,
    instance_id      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN
        ('ABSENT', 'CREATING', 'ACTIVE', 'DELETING', 'DELETED', 'DELETION_FAILED')),
    suffix           TEXT,
    role_name        TEXT,
    role_arn         TEXT,
    role_id          TEXT,
    path             TEXT,
    description      TEXT,
    iam_create_time  TIMESTAMPTZ,
    last_used_time   TIMESTAMPTZ,
    last_used_region TEXT,
    adopted          BOOLEAN NOT NULL DEFAULT FALSE,
    deletion_task_id TEXT,
    deletion_failure JSONB,
    lease_owner      TEXT,
    lease_expires    TIMESTAMPTZ,
    attempts         INTEGER NOT NULL DEFAULT 0,
    revision         BIGINT NOT NULL CHECK (revision > 0),
    update_time      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, instance_id),
    FOREIGN KEY (account_id, instance_id) REFERENCES instances (account_id, instance_id)
        ON DELETE CASCADE
);

-- One instance record owns a role: a second record cannot take the same
-- ARN while the first still holds it.
CREATE UNIQUE INDEX linked_roles_arn_idx ON linked_roles (role_arn)
    WHERE role_arn IS NOT NULL AND state <> 'DELETED';

-- Background work: the workflows whose lease has run out.
CREATE INDEX linked_roles_lease_idx ON linked_roles (lease_expires)
    WHERE lease_expires IS NOT NULL;
