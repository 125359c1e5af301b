-- The portal's two PostgreSQL roles and its database.
--
--   psql -U postgres -v owner=portal_owner -v app=portal_app -v db=portal \
--        [-v owner_password=...] [-v app_password=...] -f deploy/postgres-roles.sql
--
-- The owner owns the schema and runs `manage.py migrate` (with
-- DATABASE_APP_ROLE naming the app role, which the migration then grants its
-- privileges). The app role is what the web server and the workers connect
-- as: neither superuser nor owner, it reads and writes the portal's tables
-- but may only INSERT and SELECT audit events, so it cannot truncate, disable
-- triggers, drop them or replicate around them. Safe to run again.

\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'app')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app') \gexec

-- CREATEDB so that the test suite, run as the owner, can make its own database.
SELECT format('ALTER ROLE %I NOSUPERUSER CREATEDB NOCREATEROLE NOBYPASSRLS', :'owner') \gexec
SELECT format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', :'app') \gexec

\if :{?owner_password}
SELECT format('ALTER ROLE %I PASSWORD %L', :'owner', :'owner_password') \gexec
\endif
\if :{?app_password}
SELECT format('ALTER ROLE %I PASSWORD %L', :'app', :'app_password') \gexec
\endif

SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'owner') \gexec

\connect :db
SELECT format('ALTER SCHEMA public OWNER TO %I', :'owner') \gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'app') \gexec
