-- Amazon Connect is the source of truth about each instance: what Connect
-- last said (its ARN, status, the service-linked role it links to the
-- instance, its identity management type), whether Connect knows the
-- instance at all (UNOBSERVED: registered by hand, never seen; OBSERVED;
-- VANISHED: Connect listed it once and no longer does, with the time it
-- was last seen), and when the service last looked. A linked role
-- recreated under the name Connect holds is `restored`.
--
-- Discovery is a workflow of its own (kind `sync`) that acts on an
-- account, or on every account of a caller (`accounts/-`), not on one
-- instance: workflows gain `target` (the resource name they act on), and
-- `instance_id` may be empty.

SELECT set_config('slrgov.scope', '*', true);

ALTER TABLE instances
    ADD COLUMN connect_arn TEXT,
    ADD COLUMN connect_status TEXT CHECK (connect_status IN
        ('CREATION_IN_PROGRESS', 'ACTIVE', 'CREATION_FAILED')),
    ADD COLUMN service_role_arn TEXT,
    ADD COLUMN identity_management_type TEXT,
    ADD COLUMN observed_state TEXT NOT NULL DEFAULT 'UNOBSERVED' CHECK (observed_state IN
        ('UNOBSERVED', 'OBSERVED', 'VANISHED')),
    ADD COLUMN last_seen_time TIMESTAMPTZ,
    ADD COLUMN sync_time TIMESTAMPTZ;

-- ListInstances filtered by what Connect says, across accounts.
CREATE INDEX instances_connect_status_idx ON instances (connect_status, account_id, instance_id);
CREATE INDEX instances_observed_idx ON instances (observed_state, account_id, instance_id);
-- `legacy = true`: created before 2018-10-01.
CREATE INDEX instances_created_idx ON instances (instance_create_time, account_id, instance_id);
-- Which instances Connect says use a role (a retirement's check).
CREATE INDEX instances_service_role_idx ON instances (service_role_arn)
    WHERE service_role_arn IS NOT NULL;

ALTER TABLE linked_roles ADD COLUMN restored BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE workflows ADD COLUMN target TEXT;
UPDATE workflows SET target = 'accounts/' || account_id || '/instances/' || instance_id
    || CASE WHEN kind = 'delete' THEN '' ELSE '/linkedRole' END;
ALTER TABLE workflows ALTER COLUMN target SET NOT NULL;
ALTER TABLE workflows ALTER COLUMN instance_id DROP NOT NULL;
ALTER TABLE workflows DROP CONSTRAINT workflows_kind_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_kind_check
    CHECK (kind IN ('ensure', 'retire', 'delete', 'sync'));

-- One running sync per account (a second one joins it); a sync of every
-- account of a caller (`accounts/-`) is not deduplicated.
CREATE UNIQUE INDEX workflows_running_sync_idx ON workflows (account_id)
    WHERE kind = 'sync' AND target <> 'accounts/-' AND phase IN ('RUNNING', 'UNWINDING');
-- The newest sync of each account (the background sync's schedule).
CREATE INDEX workflows_sync_idx ON workflows (account_id, create_time) WHERE kind = 'sync';
