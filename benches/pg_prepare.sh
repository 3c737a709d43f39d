#!/usr/bin/env bash
# Prepares two PostgreSQL databases of real text for the "nightly dump"
# comparison in benches/compare.sh:
#   bench_v1  table lines(id bigint primary key, path text, line_no int, text text)
#             filled by COPY from the lines of text files on this machine
#             (Rust docs and sources under ~/.rustup, docs under /usr/share),
#             until PG_TEXT_MB megabytes of line text (default 400) are loaded;
#   bench_v2  a copy of bench_v1 (CREATE DATABASE ... TEMPLATE) with the night's
#             changes: 0.25% of rows updated, 0.1% inserted, 0.1% deleted
#             (random rows, fixed seed).
# Needs the throwaway services (source scripts/services.sh start); reads
# SNAP_TEST_PG_HOST/PORT/USER/BIN. Idempotent: does nothing if bench_v2 exists
# (PG_FRESH=1 rebuilds).
set -euo pipefail
: "${SNAP_TEST_PG_HOST:?source scripts/services.sh start first}"
PGBIN="${SNAP_TEST_PG_BIN:-/usr/bin}"
export PGHOST="$SNAP_TEST_PG_HOST" PGPORT="$SNAP_TEST_PG_PORT" PGUSER="$SNAP_TEST_PG_USER"
PG_TEXT_MB="${PG_TEXT_MB:-400}"
psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
if [ "${PG_FRESH:-0}" != 1 ] && psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='bench_v2'" | grep -q 1; then
  echo "pg_prepare: bench_v1 and bench_v2 already exist"
  exit 0
fi
psql -d postgres -c "DROP DATABASE IF EXISTS bench_v2" -c "DROP DATABASE IF EXISTS bench_v1" -c "CREATE DATABASE bench_v1"
psql -d bench_v1 -c "CREATE TABLE lines(id bigint PRIMARY KEY, path text NOT NULL, line_no int NOT NULL, text text NOT NULL)"
# Lines of real text files, escaped for COPY's text format.
python3 - "$PG_TEXT_MB" <<'PY' | psql -d bench_v1 -c "COPY lines(id,path,line_no,text) FROM STDIN"
import os, sys
limit = int(sys.argv[1]) << 20
roots = [os.path.expanduser("~/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/share/doc"),
         os.path.expanduser("~/.rustup/toolchains"), "/usr/share/doc", "/usr/share"]
exts = (".rs", ".md", ".html", ".txt", ".js", ".css", ".toml", ".py", ".c", ".h", ".sh", ".json", ".xml", ".pl", ".pm", ".el")
seen, total, rid = set(), 0, 0
out = sys.stdout
def esc(s):
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")
for root in roots:
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if not f.endswith(exts) or os.path.islink(p):
                continue
            rp = os.path.realpath(p)
            if rp in seen:
                continue
            seen.add(rp)
            try:
                data = open(p, "rb").read().decode("utf-8")
            except Exception:
                continue
            for n, line in enumerate(data.split("\n"), 1):
                rid += 1
                total += len(line) + 1
                out.write(f"{rid}\t{esc(p)}\t{n}\t{esc(line)}\n")
            if total >= limit:
                sys.stderr.write(f"pg_prepare: {rid} lines, {total >> 20} MiB of text\n")
                sys.exit(0)
sys.stderr.write(f"pg_prepare: {rid} lines, {total >> 20} MiB of text (all files)\n")
PY
psql -d bench_v1 -c "VACUUM ANALYZE lines"
psql -d postgres -c "CREATE DATABASE bench_v2 TEMPLATE bench_v1"
# The night's changes: 0.25% updated, 0.1% inserted, 0.1% deleted.
psql -d bench_v2 <<'SQL'
SELECT setseed(0.42);
CREATE TEMP TABLE n AS SELECT count(*) AS rows, max(id) AS top FROM lines;
UPDATE lines SET text = text || ' -- edited ' || md5(id::text)
  WHERE id IN (SELECT id FROM lines ORDER BY random() LIMIT (SELECT rows / 400 FROM n));
DELETE FROM lines
  WHERE id IN (SELECT id FROM lines ORDER BY random() LIMIT (SELECT rows / 1000 FROM n));
INSERT INTO lines(id, path, line_no, text)
  SELECT (SELECT top FROM n) + row_number() OVER (), path, line_no, 'new: ' || text
  FROM (SELECT * FROM lines ORDER BY random() LIMIT (SELECT rows / 1000 FROM n)) s;
SQL
psql -d bench_v1 -tAc "SELECT 'bench_v1 rows: ' || count(*) || ', size ' || pg_size_pretty(pg_database_size('bench_v1')) FROM lines"
psql -d bench_v2 -tAc "SELECT 'bench_v2 rows: ' || count(*) FROM lines"
