-- The per-account rate of AWS calls, shared by every replica (issue 16):
-- one row per account and AWS service (`iam`, `connect`) holding the
-- bucket's theoretical arrival time (GCRA). A call reserves its slot with
-- one statement (`rate_reserve` in the store) that moves `tat` forward by
-- one interval, on the database's clock, so the replicas' clocks do not
-- matter; the caller then waits until its slot.
--
-- Not tenant data (like `service_keys`): it holds no caller's data, only
-- timestamps, and every replica must see every account's bucket whatever
-- the caller's scope, so it is not under row-level security. SQLite has no
-- such table: it serves one process, whose own limiter is already exact.
CREATE TABLE rate_buckets (
    account_id TEXT NOT NULL,
    service    TEXT NOT NULL,
    tat        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, service)
);
