-- Batches and cancellation. BatchEnsureLinkedRoles starts one workflow of
-- kind `batch_ensure` that ensures the role of every instance the caller
-- listed, one at a time (its inputs list them; its state says how far it
-- got, so it resumes where it stopped). Batches never join each other: two
-- may run at once in an account (each ensure is idempotent), so there is
-- no unique index of running batches. A batch acts on an account (or on
-- `accounts/-`, held under the first account, as syncs are): no
-- instance_id, so the one-running-workflow-per-instance index does not
-- apply to it.
--
-- CancelOperation asks a running workflow (a batch or a sync) to stop:
-- `cancel_requested` records the request; the workflow's next step sees it
-- and ends the workflow CANCELLED after its current unit of work. It is a
-- column of its own, not part of the step's state: the caller who cancels
-- does not hold the workflow, and the holder's next save must not erase
-- the request.
--
-- `workflows` keeps its row-level security (0006): only the kind check and
-- a column change, nothing is rebuilt here.

ALTER TABLE workflows DROP CONSTRAINT workflows_kind_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_kind_check
    CHECK (kind IN ('ensure', 'retire', 'delete', 'sync', 'reconcile', 'batch_ensure'));

ALTER TABLE workflows ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;
