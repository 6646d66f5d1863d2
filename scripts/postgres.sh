#!/usr/bin/env bash
# Start a throwaway local PostgreSQL for the store's Postgres tests and print its SQLAlchemy URL.
# Needs root and Debian's packages; prints nothing (exit 1) when that is not possible.
set -uo pipefail
command -v pg_ctlcluster >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1
} || exit 1
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_ctlcluster "$version" main start >/dev/null 2>&1 || pg_ctlcluster "$version" main status >/dev/null 2>&1 || exit 1
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='agents'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE USER agents WITH PASSWORD 'agents'\"" >/dev/null || exit 1
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='agents_test'\"" | grep -q 1 ||
    su postgres -c "createdb -O agents agents_test" || exit 1
echo "postgresql+psycopg://agents:agents@127.0.0.1/agents_test"
