-- The database roles of slr-governor, split so that the service cannot
-- undo its own row-level security:
--
--   slrgov_owner    NOLOGIN: owns the schema and every table, function and
--                   trigger the migrations create.
--   slrgov_migrate  LOGIN, member of slrgov_owner, and acts as it (`SET
--                   role` below): `slr-governor migrate` connects as it
--                   (SLRGOV_MIGRATION_DATABASE_URL, the migration Job).
--   slrgov_app      LOGIN: what the server serves as (SLRGOV_DATABASE_URL).
--                   SELECT, INSERT, UPDATE, DELETE on the tables and USAGE
--                   on the sequences, nothing more: it cannot ALTER TABLE
--                   ... NO FORCE ROW LEVEL SECURITY, drop the audit
--                   trail's triggers or create anything. At start it checks
--                   that the migrations are applied and refuses to serve
--                   otherwise, naming `slr-governor migrate`.
--
-- None is a superuser or BYPASSRLS, nor a member of one: the server refuses
-- a role that is, or that can SET ROLE to one.
--
-- Run it once, as an administrator (a superuser, or a CREATEROLE role such
-- as the RDS master user), connected to the service's database, which must
-- exist (e.g. `CREATE DATABASE slrgov;`):
--
--   psql "postgres://admin@db.internal:5432/slrgov" -v ON_ERROR_STOP=1 \
--        -f deploy/postgres/roles.sql
--
-- then give the two login roles their passwords (or use IAM authentication):
--
--   ALTER ROLE slrgov_migrate PASSWORD '...';
--   ALTER ROLE slrgov_app PASSWORD '...';
--
-- Moving a single-role deployment (one role that owns the tables and
-- serves) to this split: run this script, then, as the administrator,
-- `REASSIGN OWNED BY <the old role> TO slrgov_owner;` and grant the
-- existing tables with the GRANT ... ON ALL TABLES lines below (they are
-- in this script, so running it after the migrations covers them).
--
-- The tests (tests/e2e/tests/e2e/postgres_roles.rs) run this very file with
-- the three names replaced by unique ones.

CREATE ROLE slrgov_owner NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE ROLE slrgov_migrate LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
    NOINHERIT IN ROLE slrgov_owner;
-- Every session of slrgov_migrate runs as slrgov_owner, so what the
-- migrations create is owned by slrgov_owner (and granted by the default
-- privileges below), not by the login role.
ALTER ROLE slrgov_migrate SET role = 'slrgov_owner';
CREATE ROLE slrgov_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;

-- The database: only these roles (and administrators) connect; nobody
-- creates temporary tables.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO slrgov_migrate, slrgov_app',
                   current_database());
END
$$;

-- The schema: the owner creates in it; the service only uses it.
ALTER SCHEMA public OWNER TO slrgov_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO slrgov_app;

-- What exists already (when the migrations ran before this script) ...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO slrgov_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO slrgov_app;

-- ... and everything later migrations create: the same grants, by default.
-- (This includes the migrations table _sqlx_migrations, which the server
-- reads at start to check that the schema is migrated.)
ALTER DEFAULT PRIVILEGES FOR ROLE slrgov_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO slrgov_app;
ALTER DEFAULT PRIVILEGES FOR ROLE slrgov_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO slrgov_app;
