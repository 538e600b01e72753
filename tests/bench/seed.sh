#!/usr/bin/env bash
# Seeds a migrated slr-governor registry with many accounts and instances,
# for the benchmarks and for trying the service at scale
# (docs/benchmarks.md, "The registry at scale").
#
#   tests/bench/seed.sh <database> <accounts> <instances per account>
#
#   # a million instances over 10,000 accounts, on Postgres (as a role that
#   # may write the tables: the admin, or the schema's owner)
#   tests/bench/seed.sh postgres://postgres@127.0.0.1:5432/slrgov 10000 100
#   # 100,000 on the embedded SQLite file (stop the service first)
#   tests/bench/seed.sh sqlite:///var/lib/slr-governor/slr-governor.db 1000 100
#
# The database must hold at least one instance made through the API (or
# the store): the template. Every seeded row copies its region, features and
# timestamps, so the rows are exactly what the store writes and reads back,
# on either engine. Seeded accounts are `5` followed by 11 digits; seeded
# instance ids are ordered UUID-shaped ids
# (5eed0000-0000-4000-8000-<12 hex digits>), so a second run with more per
# account tops the registry up rather than failing. One INSERT ... SELECT per
# table (generate_series on Postgres, a recursive CTE on SQLite), then
# VACUUM ANALYZE. Measured with this script: 100,000 instances on SQLite in
# 3-9 s; on Postgres only small top-ups. The same INSERT ... SELECT by hand
# loaded a million instances over 10,000 accounts in 130 s (the change-log
# trigger included, on a busy 2-core machine).
set -euo pipefail

[ $# -eq 3 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
database="$1"
accounts="$2"
per_account="$3"
[[ "$accounts" =~ ^[1-9][0-9]*$ && "$per_account" =~ ^[1-9][0-9]*$ ]] ||
  { echo "accounts and instances per account must be positive integers" >&2; exit 2; }
[ "$accounts" -le 99999999999 ] || { echo "at most 99999999999 accounts" >&2; exit 2; }
t0="$(date +%s%N)"

case "$database" in
postgres://* | postgresql://*)
  psql "$database" -qAt -v ON_ERROR_STOP=1 <<SQL
BEGIN;
-- The service's tables are under FORCE ROW LEVEL SECURITY: as their owner,
-- act for every account (an admin skips the policies anyway).
SELECT FROM (SELECT set_config('slrgov.scope', '*', true)) AS scope WHERE false;
CREATE TEMP TABLE template ON COMMIT DROP AS
  SELECT a.partition, a.create_time AS account_time, i.region, i.features,
         i.create_time, i.update_time
    FROM instances i JOIN accounts a USING (account_id)
   ORDER BY i.create_time LIMIT 1;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM template) THEN
    RAISE EXCEPTION 'no template: make one instance through the API first';
  END IF;
END \$\$;
INSERT INTO accounts (account_id, display_name, partition, revision, create_time, update_time)
SELECT '5' || lpad(a::text, 11, '0'), 'seeded ' || a, t.partition, 1, t.account_time, t.account_time
  FROM template t, generate_series(1, $accounts) AS a
ON CONFLICT (account_id) DO NOTHING;
INSERT INTO instances (account_id, instance_id, instance_alias, region, features, revision,
                       create_time, update_time)
SELECT '5' || lpad(a::text, 11, '0'), '5eed0000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'),
       'seed-' || i, t.region, t.features, 1, t.create_time, t.update_time
  FROM template t, generate_series(1, $accounts) AS a, generate_series(1, $per_account) AS i
ON CONFLICT (account_id, instance_id) DO NOTHING;
COMMIT;
VACUUM ANALYZE accounts;
VACUUM ANALYZE instances;
SQL
  count="$(psql "$database" -qAt \
    -c "SELECT FROM (SELECT set_config('slrgov.scope', '*', false)) AS scope WHERE false" \
    -c "SELECT count(*) FROM instances WHERE account_id LIKE '5%'")"
  ;;
sqlite://*)
  file="${database#sqlite://}"
  file="${file%%\?*}"
  [ -f "$file" ] || { echo "$file: no such SQLite file" >&2; exit 1; }
  [ "$(sqlite3 "$file" "SELECT count(*) FROM instances")" != 0 ] ||
    { echo "no template: make one instance through the API first" >&2; exit 1; }
  sqlite3 -bail "$file" <<SQL
.timeout 5000
BEGIN IMMEDIATE;
CREATE TEMP TABLE template AS
  SELECT a.partition, a.create_time AS account_time, i.region, i.features,
         i.create_time, i.update_time
    FROM instances i JOIN accounts a USING (account_id)
   ORDER BY i.create_time LIMIT 1;
INSERT OR IGNORE INTO accounts (account_id, display_name, partition, revision, create_time, update_time)
WITH RECURSIVE n(a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM n WHERE a < $accounts)
SELECT '5' || printf('%011d', a), 'seeded ' || a, t.partition, 1, t.account_time, t.account_time
  FROM template t, n;
INSERT OR IGNORE INTO instances (account_id, instance_id, instance_alias, region, features, revision,
                                 create_time, update_time)
WITH RECURSIVE n(a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM n WHERE a < $accounts),
               m(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM m WHERE i < $per_account)
SELECT '5' || printf('%011d', a), '5eed0000-0000-4000-8000-' || printf('%012x', i),
       'seed-' || i, t.region, t.features, 1, t.create_time, t.update_time
  FROM template t, n, m;
COMMIT;
ANALYZE;
SQL
  count="$(sqlite3 "$file" "SELECT count(*) FROM instances WHERE account_id LIKE '5%'")"
  ;;
*)
  echo "expected a postgres:// or sqlite:// URL, got $database" >&2
  exit 2
  ;;
esac

echo "seeded: $count instances over the seeded accounts in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
