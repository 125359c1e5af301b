#!/bin/sh
# Run once by the postgres image on a new data volume: the portal's two roles.
set -e
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres \
  -v owner=portal_owner -v app=portal_app -v db="$POSTGRES_DB" \
  -v owner_password="$PORTAL_OWNER_PASSWORD" -v app_password="$PORTAL_APP_PASSWORD" \
  -f /portal/postgres-roles.sql
