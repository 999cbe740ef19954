#!/bin/sh
# hack/postgres.sh: make sure the PostgreSQL server binaries (initdb,
# postgres) are installed and print the directory that holds them, e.g.
# /usr/lib/postgresql/15/bin. The tests of internal/engine/database and
# internal/pgtest find them through $COFFER_PG_BIN:
#
#   export COFFER_PG_BIN="$(hack/postgres.sh)"
#
# When they are missing they are installed from the distribution's packages
# (Debian: apt-get install -y postgresql), which needs root. Only the bin
# directory goes to stdout; everything else goes to stderr.
set -eu

find_bin() {
	if [ -n "${COFFER_PG_BIN:-}" ] && [ -x "$COFFER_PG_BIN/initdb" ] && [ -x "$COFFER_PG_BIN/postgres" ]; then
		echo "$COFFER_PG_BIN"
		return 0
	fi
	best=""
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
		if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then
			best="$d"
		fi
	done
	if [ -n "$best" ]; then
		echo "$best"
		return 0
	fi
	if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
		dirname "$(command -v initdb)"
		return 0
	fi
	return 1
}

if find_bin; then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "postgres.sh: PostgreSQL server binaries not found and apt-get is not available; install PostgreSQL and set COFFER_PG_BIN to its bin directory" >&2
	exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "postgres.sh: PostgreSQL is missing; run as root: apt-get update && apt-get install -y postgresql" >&2
		exit 1
	fi
fi
echo "postgres.sh: installing PostgreSQL (apt-get install -y postgresql)" >&2
$SUDO apt-get update >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends postgresql >&2

if find_bin; then
	exit 0
fi
echo "postgres.sh: PostgreSQL was installed but initdb/postgres were not found under /usr/lib/postgresql/*/bin" >&2
exit 1
