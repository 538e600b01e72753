-- The tenant policies of migration 0005, in a form the planner can estimate
-- and that costs less per row (issue 15).
--
-- 0005's policy inlines `slrgov_account_visible(account_id)`:
-- `COALESCE(current_setting('slrgov.scope', true), '') = '*' OR account_id
-- = ANY (string_to_array(...))`. The planner cannot know a setting, so it
-- guessed that clause keeps 0.5% of the rows, and planned every scan of a
-- tenant table for a two-hundredth of the rows it reads. For a page of
-- ListInstances in an account of 10,000 instances, that made reading every
-- instance after the page's key and sorting them look cheaper than walking
-- the primary key for 101 rows: 1-4 ms a page, and a sequential scan for
-- the first one, where an account of a million got the index walk
-- (docs/benchmarks.md).
--
-- Here each part of the test is a sub-select of no row: Postgres runs it
-- once per statement (an InitPlan), when the scan first needs it, and the
-- row test is `$1 OR account_id = ANY ($2)`. A parameter of a sub-select
-- is estimated as keeping half of the rows or more, so the plans follow
-- the real filters and keys. What a row may be seen under is unchanged:
-- the scope is read after the statement has set it (`set_config` runs
-- first, as a one-time filter or the outer side of the statement), and an
-- unset or empty scope still shows no rows (`'' = '*'` is false, and
-- `= ANY (NULL)` is not true).

DO $$
DECLARE
    tenant_table TEXT;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY['accounts', 'instances', 'linked_roles', 'request_ids',
        'audit_events', 'workflows', 'findings', 'changes']
    LOOP
        EXECUTE format($policy$
            ALTER POLICY tenant_scope ON %I USING (
                (SELECT COALESCE(current_setting('slrgov.scope', true), '') = '*')
                OR account_id = ANY ((SELECT string_to_array(
                    NULLIF(current_setting('slrgov.scope', true), ''), ','))::text[]))
        $policy$, tenant_table);
    END LOOP;
END
$$;

-- No policy calls it any more; the policies above are the one definition.
DROP FUNCTION slrgov_account_visible(TEXT);
