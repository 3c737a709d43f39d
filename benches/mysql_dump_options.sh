#!/usr/bin/env bash
# Which mariadb-dump row layout deduplicates best from night to night?
#
# One database of real text (benches/mysql_data.py create SCALE), dumped every night with
# three layouts into three snap repositories:
#   extended   mariadb-dump's default: multi-row INSERTs of up to --net-buffer-length
#              (1 MiB) each
#   short-net  multi-row INSERTs of at most 16 KiB (--net-buffer-length=16384)
#   row        one INSERT per row (--skip-extended-insert)
# Between nights, benches/mysql_data.py night changes 0.25% of the rows and inserts and
# deletes 0.1%. Prints one TSV line per layout and night: dump bytes, bytes added to the
# repository, and added as a share of night 1's stored bytes; then the time a restore of
# the last dump takes with each layout.
#
# Usage: benches/mysql_dump_options.sh [SCALE [NIGHTS]]   (defaults 20000 and 4)
# Needs: a built snap (SNAP, default $CARGO_TARGET_DIR/debug/snap or target/debug/snap), the
# MariaDB of scripts/services.sh (SNAP_TEST_MYSQL_* in the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-20000}
NIGHTS=${2:-4}
SNAP=${SNAP:-${CARGO_TARGET_DIR:-target}/debug/snap}
: "${SNAP_TEST_MYSQL_PORT:?run: eval \"\$(scripts/services.sh env)\"}"
WORK=$(mktemp -d /tmp/snap-mysql-opts.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 700 "$WORK"
CNF="$WORK/client.cnf"
printf '[client]\nhost=%s\nport=%s\nuser=%s\npassword="%s"\n' "$SNAP_TEST_MYSQL_HOST" \
    "$SNAP_TEST_MYSQL_PORT" "$SNAP_TEST_MYSQL_USER" "$(head -n 1 "$SNAP_TEST_MYSQL_PASSWORD_FILE")" >"$CNF"
chmod 600 "$CNF"
DB="snap_opts_$$"
my() { mariadb --defaults-extra-file="$CNF" "$@"; }
my -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
python3 benches/mysql_data.py create "$SCALE" | my "$DB"

export SNAP_PASSWORD=bench SNAP_TEST_FAST_KDF=1
LAYOUTS="extended short-net row"
opts() {
    case $1 in
    extended) echo "" ;;
    short-net) echo "--net-buffer-length=16384" ;;
    row) echo "--skip-extended-insert" ;;
    esac
}
BASE="mariadb-dump --defaults-extra-file=$CNF --single-transaction --quick --routines --events --triggers --hex-blob"
for l in $LAYOUTS; do
    "$SNAP" --repo "$WORK/repo-$l" --cache-dir "$WORK/cache-$l" init >/dev/null 2>&1
done
printf 'layout\tnight\tdump_bytes\tadded_stored\tadded_pct_of_night1\n'
declare -A FIRST
for night in $(seq 1 "$NIGHTS"); do
    if [ "$night" -gt 1 ]; then
        python3 benches/mysql_data.py night "$night" "$SCALE" | my "$DB"
    fi
    for l in $LAYOUTS; do
        # shellcheck disable=SC2046
        out=$("$SNAP" --repo "$WORK/repo-$l" --cache-dir "$WORK/cache-$l" --json --no-progress \
            backup --command "dump.sql=$BASE $(opts "$l") $DB")
        read -r total added < <(printf '%s' "$out" | python3 -c '
import json, sys
s = json.load(sys.stdin)["summary"]
print(s["total_bytes"], s["bytes_added_stored"])')
        [ "$night" = 1 ] && FIRST[$l]=$added
        printf '%s\t%s\t%s\t%s\t%.2f\n' "$l" "$night" "$total" "$added" \
            "$(python3 -c "print($added * 100 / ${FIRST[$l]})")"
    done
done
printf '\nlayout\trestore_seconds\n'
for l in $LAYOUTS; do
    my -e "DROP DATABASE IF EXISTS ${DB}_r; CREATE DATABASE ${DB}_r"
    t0=$(date +%s.%N)
    "$SNAP" --repo "$WORK/repo-$l" --cache-dir "$WORK/cache-$l" restore latest --stdout |
        my "${DB}_r"
    printf '%s\t%.1f\n' "$l" "$(python3 -c "print($(date +%s.%N) - $t0)")"
done
my -e "DROP DATABASE IF EXISTS $DB; DROP DATABASE IF EXISTS ${DB}_r"
