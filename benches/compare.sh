#!/usr/bin/env bash
# Side-by-side comparison of snap (release build), restic and borg on the same
# data in one run, alternating tools, ROUNDS rounds; prints a table of medians
# and ratios (snap / restic) and writes it to benches/results/compare-<date>.md.
#
#   benches/compare.sh                      # defaults below
#   ROUNDS=1 SRC=/some/tree benches/compare.sh
#
# Knobs (environment):
#   SRC      tree for steps 1-3 (default ~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu,
#            about 1.3 GB in 52 000 files: binaries, rlibs, HTML docs)
#   ROUNDS   rounds (default 3); each round runs every tool once, in a rotated order
#   TOOLS    tools to run (default "snap restic borg-lz4 borg-zstd3")
#   DUMPS    1 = run steps 4-5 (PostgreSQL dumps), 0 = skip (default 1)
#   MYSQL    1 = run step 7 (MariaDB dumps, snap and restic), 0 = skip (default 1 when
#            SNAP_TEST_MYSQL_PORT is set, i.e. scripts/services.sh started MariaDB)
#   MYSQL_SCALE  posts in the MariaDB database of step 7 (default 20000: a 49 MB dump)
#   NAME     suffix for the result file name (compare-<date>-NAME.md)
#   SNAP_BIN a snap binary to use instead of building the release one (e.g. the dev build,
#            whose dependencies are optimised too; bytes are the same, times a little slower)
#   WORK     scratch directory for repositories and restores (default a new /tmp/snap-compare.*;
#            all repositories live on the same filesystem)
#   LOCAL    1 = run steps 1-5 (local repositories), 0 = skip them (default 1)
#   S3       1 = run step 6 (S3, snap and restic only), 0 = skip it (default 1)
#   S3_SRC   tree for step 6: a path, or the word "toolchain" for SRC (default /usr/share/doc)
#   DELAYS   added latency per request/response exchange in ms for step 6 (default "0 20 50")
#   S3_SERVER  s3s (default: s3s-fs, started by this script on 127.0.0.1 with its data in WORK,
#            built once by scripts/services.sh) or moto (the running test server of
#            scripts/services.sh, SNAP_TEST_S3_ENDPOINT; it handles one request at a time)
#
# Steps, each timed with /usr/bin/time (wall s, user+sys CPU s, peak RSS):
#   1. initial backup of SRC into a fresh repository (repository bytes after it)
#   2. second backup of the unchanged SRC (bytes added)
#   3. full restore of the second snapshot into a freshly made ext4
#      filesystem (loop device; RESTORE_FS=work restores into WORK instead),
#      then `diff -r` against SRC (diff time reported separately, not counted
#      in the tool's time); 3b. the same restore into WORK, right after the
#      previous restore was deleted there (see fresh_fs below)
#   4. two nightly dumps: `pg_dump -d bench_v1 | TOOL <stdin>` then bench_v2
#      (bench_v2 = bench_v1 with 0.25% rows updated, 0.1% inserted, 0.1% deleted;
#      see benches/pg_prepare.sh) into a fresh repository; wall time of each and
#      bytes added by the second. Only the backup tool is under /usr/bin/time,
#      pg_dump runs in the same pipeline (its CPU is not counted, its speed
#      bounds the wall time of every tool alike).
#   5. restic and snap: the same pair as `pg_dump -Fc -Z0` (snap: its own
#      `--pg` source, which runs exactly that) and as `pg_dump -Fc` (default
#      compression), to show what the dump settings save.
#   6. S3 (snap and restic): both back up S3_SRC into a fresh repository on the same
#      S3-compatible server on 127.0.0.1 (6-d00-initial, no latency added), then for each
#      delay D in DELAYS, through benches/latency_proxy.py (D ms added to every HTTP
#      request/response exchange, not to each packet; see that file):
#        6-dD-restore   full restore of the latest snapshot, the tool's cache as the backup
#                       left it, into a fresh ext4 (as step 3), verified with diff -r;
#        6-dD-1file     restore of one file (the median-sized file of S3_SRC) with a new,
#                       empty cache dir: snap `restore --include FILE` with a fresh
#                       SNAP_CACHE_DIR, restic `restore --include FILE` with a fresh
#                       --cache-dir; verified with cmp;
#        6-dD-nochange  backup of the unchanged S3_SRC with the tool's cache.
#      Clients at their defaults (restic: 5 S3 connections). The table adds a speed ratio
#      snap/restic = restic wall / snap wall (above 1: snap is faster).
#   7. MariaDB (snap and restic): two nightly dumps of a database of real text
#      (benches/mysql_data.py), snap through its --mysql source, restic through
#      `mariadb-dump ... | restic backup --stdin`; bytes added by the second night.
# Before every timed step the script runs `sync` (not timed), so one step's
# dirty pages are not written back during the next tool's step.
# Caches: there is no way to drop the page cache here, so SRC is read once
# before the first round (warm-up) and every tool sees a warm cache. Each tool
# keeps its own cache dir (snap catalog, restic cache, borg files cache) as in
# real use; fresh repositories get fresh caches.
# Passwords come from the environment (SNAP_PASSWORD, RESTIC_PASSWORD,
# BORG_PASSPHRASE); set here to a throwaway value.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC="${SRC:-$HOME/.rustup/toolchains/stable-x86_64-unknown-linux-gnu}"
SRC=$(cd "$SRC" && pwd -P)
ROUNDS="${ROUNDS:-3}"
LOCAL="${LOCAL:-1}"
S3="${S3:-1}"
S3_SRC="${S3_SRC:-/usr/share/doc}"
[ "$S3_SRC" = toolchain ] && S3_SRC=$SRC
S3_SRC=$(cd "$S3_SRC" && pwd -P)
DELAYS="${DELAYS:-0 20 50}"
S3_SERVER="${S3_SERVER:-s3s}"
TOOLS="${TOOLS:-snap restic borg-lz4 borg-zstd3}"
DUMPS="${DUMPS:-1}"
MYSQL="${MYSQL:-$([ -n "${SNAP_TEST_MYSQL_PORT:-}" ] && echo 1 || echo 0)}"
MYSQL_SCALE="${MYSQL_SCALE:-20000}"
WORK="${WORK:-$(mktemp -d /tmp/snap-compare.XXXXXX)}"
mkdir -p "$WORK"
RAW="$WORK/raw.tsv"
: >"$RAW"
export SNAP_PASSWORD=compare-bench RESTIC_PASSWORD=compare-bench BORG_PASSPHRASE=compare-bench
export BORG_DISPLAY_PASSPHRASE=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_BASE_DIR="$WORK/borg-base"
log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools -----------------------------------------------------------------
if ! command -v restic >/dev/null || ! command -v borg >/dev/null; then
  log "installing restic and borgbackup"
  apt-get install -y -q restic borgbackup >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q restic borgbackup >/dev/null; }
fi
if [ -n "${SNAP_BIN:-}" ]; then
  SNAP=$(realpath "$SNAP_BIN")
  log "using $SNAP (SNAP_BIN; not the release build)"
else
  log "building snap (release)"
  cargo build --release --quiet
  SNAP="${CARGO_TARGET_DIR:-$ROOT/target}/release/snap"
fi
VERSIONS="snap $(git rev-parse --short HEAD); $(restic version | cut -d' ' -f1-2); $(borg --version)"

if [ "$DUMPS" = 1 ] && [ "$LOCAL" = 1 ]; then
  : "${SNAP_TEST_PG_HOST:?steps 4-5 need PostgreSQL: source scripts/services.sh start (or DUMPS=0)}"
  export PGHOST="$SNAP_TEST_PG_HOST" PGPORT="$SNAP_TEST_PG_PORT" PGUSER="$SNAP_TEST_PG_USER"
  PGBIN="${SNAP_TEST_PG_BIN:-/usr/bin}"
  benches/pg_prepare.sh
  PG_DUMP="$PGBIN/pg_dump"
  DUMP_BYTES=$("$PG_DUMP" -d bench_v1 | wc -c)
  log "plain dump of bench_v1: $DUMP_BYTES bytes"
fi

# --- measurement helpers ---------------------------------------------------
# rec TOOL ROUND STEP METRIC VALUE
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; }
bytes() { du -sb "$1" | cut -f1; }
# timed TOOL ROUND STEP CMD...: runs CMD under /usr/bin/time, records wall, cpu, rss.
timed() {
  local tool=$1 round=$2 step=$3
  shift 3
  local tf="$WORK/time.$$"
  sync
  if ! /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$WORK/out.log" 2>&1; then
    log "FAILED: $tool $step: $*"
    tail -5 "$WORK/out.log" >&2
    return 1
  fi
  read -r wall user sys rss <"$tf"
  rec "$tool" "$round" "$step" wall "$wall"
  rec "$tool" "$round" "$step" cpu "$(echo "$user + $sys" | bc)"
  rec "$tool" "$round" "$step" rss_mib "$(echo "scale=1; $rss / 1024" | bc)"
  log "$tool $step: ${wall}s wall, $(echo "$user + $sys" | bc)s cpu, $((rss / 1024)) MiB"
}
# timed_stdin TOOL ROUND STEP PRODUCER -- CMD...: PRODUCER | CMD, only CMD timed.
timed_pipe() {
  local tool=$1 round=$2 step=$3 producer=$4
  shift 4
  local tf="$WORK/time.$$"
  sync
  if ! bash -c "set -o pipefail; $producer | /usr/bin/time -f '%e %U %S %M' -o '$tf' \"\$@\"" _ "$@" >"$WORK/out.log" 2>&1; then
    log "FAILED: $tool $step: $producer | $*"
    tail -5 "$WORK/out.log" >&2
    return 1
  fi
  read -r wall user sys rss <"$tf"
  rec "$tool" "$round" "$step" wall "$wall"
  rec "$tool" "$round" "$step" cpu "$(echo "$user + $sys" | bc)"
  rec "$tool" "$round" "$step" rss_mib "$(echo "scale=1; $rss / 1024" | bc)"
  log "$tool $step: ${wall}s wall, $(echo "$user + $sys" | bc)s cpu, $((rss / 1024)) MiB"
}

# Per-tool verbs: init REPO, backup REPO PATH, restore REPO TARGET,
# backup_stdin REPO NAME (reads stdin). $1 is the tool name.
t_init() {
  local t=$1 r=$2
  case $t in
    snap) SNAP_REPO=$r "$SNAP" init >/dev/null ;;
    restic) restic init --repo "$r" >/dev/null ;;
    borg-*) borg init --encryption=repokey-blake2 "$r" >/dev/null 2>&1 ;;
  esac
}
borg_comp() { case $1 in borg-lz4) echo lz4 ;; borg-zstd3) echo zstd,3 ;; esac; }
t_backup() {
  local t=$1 r=$2 p=$3
  case $t in
    snap) env SNAP_REPO="$r" SNAP_CACHE_DIR="$WORK/cache-snap" "$SNAP" backup "$p" ;;
    restic) restic backup --repo "$r" --cache-dir "$WORK/cache-restic" "$p" ;;
    borg-*) borg create --compression "$(borg_comp "$t")" "$r::{now:%Y%m%dT%H%M%S.%f}" "$p" ;;
  esac
}
t_restore() {
  local t=$1 r=$2 target=$3
  case $t in
    snap) env SNAP_REPO="$r" SNAP_CACHE_DIR="$WORK/cache-snap" "$SNAP" restore latest --target "$target" ;;
    restic) restic restore latest --repo "$r" --cache-dir "$WORK/cache-restic" --target "$target" ;;
    borg-*) mkdir -p "$target" && cd "$target" && borg extract "$r::$(borg list --last 1 --short "$r")" ;;
  esac
}
# Command line (a string, run by bash -c) that backs up stdin as NAME.
t_stdin_cmd() {
  local t=$1 r=$2 name=$3
  case $t in
    snap) echo "env SNAP_REPO='$r' SNAP_CACHE_DIR='$WORK/cache-snap' '$SNAP' backup --stdin --stdin-name '$name'" ;;
    restic) echo "restic backup --repo '$r' --cache-dir '$WORK/cache-restic' --stdin --stdin-filename '$name'" ;;
    borg-*) echo "borg create --compression $(borg_comp "$t") --stdin-name '$name' '$r::{now:%Y%m%dT%H%M%S.%f}' -" ;;
  esac
}
export -f t_backup t_restore borg_comp
export SNAP WORK

# fresh_fs: makes a new ext4 filesystem on a loop device at $FRESH_MNT for the
# next restore (RESTORE_FS=fresh, the default), sized for a tree of $1 bytes
# (default SRC_BYTES); returns 1 and leaves
# FRESH_MNT empty when that is not possible here (then restores go to $WORK).
# Why: restoring right after deleting the previous restore makes ext4's inode
# allocator skip every recently deleted inode (fs/ext4/ialloc.c
# recently_deleted(), 60-300 s), which on this machine tripled the kernel time
# of creating 52,000 files for every tool alike; step 3b still measures that
# case.
FRESH_MNT=""
fresh_fs() {
  [ "${RESTORE_FS:-fresh}" = fresh ] || return 1
  local img="$WORK/restore-fs.img" mnt="$WORK/restore-fs"
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt"; fi
  rm -f "$img"
  mkdir -p "$mnt"
  truncate -s "$((${1:-$SRC_BYTES} * 2 + (1 << 30)))" "$img" &&
    mkfs.ext4 -q -F "$img" >/dev/null 2>&1 &&
    mount -o loop "$img" "$mnt" 2>/dev/null || {
      log "RESTORE_FS=fresh: cannot make a loop-mounted ext4 here; restoring into $WORK"
      FRESH_MNT=""
      RESTORE_FS=work
      return 1
    }
  FRESH_MNT="$mnt"
}
cleanup_fresh_fs() {
  if [ -n "$FRESH_MNT" ] && mountpoint -q "$FRESH_MNT"; then umount "$FRESH_MNT"; fi
  rm -f "$WORK/restore-fs.img"
}
trap cleanup_fresh_fs EXIT

# --- warm-up ---------------------------------------------------------------
SRC_BYTES=$(du -sb "$SRC" | cut -f1)
SRC_FILES=$(find "$SRC" -type f | wc -l)
if [ "$LOCAL" = 1 ]; then
  log "warm-up read of $SRC ($SRC_BYTES bytes, $SRC_FILES files)"
  tar -cf - "$SRC" 2>/dev/null | cat >/dev/null
fi

# --- rounds ----------------------------------------------------------------
read -r -a tools <<<"$TOOLS"
n=${#tools[@]}
started=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
  [ "$LOCAL" = 1 ] || break
  for ((k = 0; k < n; k++)); do
    t=${tools[$(((k + round - 1) % n))]}
    log "round $round: $t"
    repo="$WORK/repo-$t"
    rm -rf "$repo" "$WORK/cache-snap" "$WORK/cache-restic" "$BORG_BASE_DIR" "$WORK/restore"
    t_init "$t" "$repo"
    # 1. initial backup
    timed "$t" "$round" 1-initial bash -c 't_backup "$@"' _ "$t" "$repo" "$SRC"
    b1=$(bytes "$repo")
    rec "$t" "$round" 1-initial repo_bytes "$b1"
    rec "$t" "$round" 1-initial mb_per_s "$(echo "scale=1; $SRC_BYTES / 1000000 / $(awk -F'\t' -v t="$t" -v r="$round" '$1==t&&$2==r&&$3=="1-initial"&&$4=="wall"{print $5}' "$RAW")" | bc)"
    # 2. unchanged
    timed "$t" "$round" 2-unchanged bash -c 't_backup "$@"' _ "$t" "$repo" "$SRC"
    b2=$(bytes "$repo")
    rec "$t" "$round" 2-unchanged bytes_added "$((b2 - b1))"
    # 3. restore + verify, into a freshly made ext4 filesystem (a new disk,
    #    as in disaster recovery), then 3b into the work filesystem.
    target="$WORK/restore"
    if fresh_fs; then target="$FRESH_MNT/restore"; fi
    timed "$t" "$round" 3-restore bash -c 't_restore "$@"' _ "$t" "$repo" "$target"
    d0=$(date +%s.%N)
    if diff -r --no-dereference "$SRC" "$target${SRC}" >"$WORK/diff.log" 2>&1; then
      rec "$t" "$round" 3-restore verified 1
    else
      rec "$t" "$round" 3-restore verified 0
      log "RESTORE DIFFERS for $t: $(head -3 "$WORK/diff.log")"
    fi
    rec "$t" "$round" 3-restore diff_s "$(echo "$(date +%s.%N) - $d0" | bc)"
    rm -rf "$target"
    if [ -n "$FRESH_MNT" ]; then
      timed "$t" "$round" 3b-restore-busy-fs bash -c 't_restore "$@"' _ "$t" "$repo" "$WORK/restore"
      rm -rf "$WORK/restore"
    fi
    rm -rf "$repo"
    # 4. nightly dumps
    if [ "$DUMPS" = 1 ]; then
      drepo="$WORK/dumps-$t"
      rm -rf "$drepo"
      t_init "$t" "$drepo"
      timed_pipe "$t" "$round" 4-dump1 "'$PG_DUMP' -d bench_v1" bash -c "$(t_stdin_cmd "$t" "$drepo" db.sql)"
      d1=$(bytes "$drepo")
      rec "$t" "$round" 4-dump1 repo_bytes "$d1"
      timed_pipe "$t" "$round" 4-dump2 "'$PG_DUMP' -d bench_v2" bash -c "$(t_stdin_cmd "$t" "$drepo" db.sql)"
      rec "$t" "$round" 4-dump2 bytes_added "$(($(bytes "$drepo") - d1))"
      rm -rf "$drepo"
      # 5. custom-format dumps: restic and snap. snap's --pg source runs
      #    pg_dump -Fc -Z0 itself (so its time includes pg_dump's CPU);
      #    the "Fc" row pipes pg_dump's default (compressed) custom format.
      if [ "$t" = restic ] || [ "$t" = snap ]; then
        for fmt in "Fc-Z0:-Fc -Z0" "Fc:-Fc"; do
          label=${fmt%%:*} flags=${fmt#*:}
          rm -rf "$drepo" "$WORK/cache-snap"
          t_init "$t" "$drepo"
          for night in 1 2; do
            step="5-$label-dump$night"
            [ "$night" = 2 ] && d1=$(bytes "$drepo")
            if [ "$t" = snap ] && [ "$label" = Fc-Z0 ]; then
              timed "$t" "$round" "$step" env SNAP_REPO="$drepo" SNAP_CACHE_DIR="$WORK/cache-snap" \
                PATH="$PGBIN:$PATH" "$SNAP" backup --pg "db.dump=bench_v$night"
            else
              timed_pipe "$t" "$round" "$step" "'$PG_DUMP' $flags -d bench_v$night" bash -c "$(t_stdin_cmd "$t" "$drepo" db.dump)"
            fi
            if [ "$night" = 1 ]; then
              rec "$t" "$round" "$step" repo_bytes "$(bytes "$drepo")"
            else
              rec "$t" "$round" "$step" bytes_added "$(($(bytes "$drepo") - d1))"
            fi
          done
          rm -rf "$drepo"
        done
      fi
    fi
  done
done
# --- 6. S3 -----------------------------------------------------------------
S3_PIDS=()
cleanup_s3() {
  local p
  for p in "${S3_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  cleanup_fresh_fs
}
trap cleanup_s3 EXIT
# s3_env TOOL ENDPOINT: the environment both clients read (keys as scripts/services.sh uses).
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
# s3_cmd TOOL VERB ENDPOINT PREFIX CACHE [ARGS...]: runs one tool against the S3 repository
# PREFIX of the bucket through ENDPOINT, with cache dir CACHE.
s3_cmd() {
  local t=$1 verb=$2 ep=$3 prefix=$4 cache=$5
  shift 5
  case $t in
    snap) env SNAP_REPO="s3://$S3_BUCKET/$prefix" SNAP_CACHE_DIR="$cache" AWS_ENDPOINT_URL="$ep" \
      AWS_ALLOW_HTTP=true "$SNAP" "$verb" "$@" ;;
    restic) restic "$verb" --repo "s3:$ep/$S3_BUCKET/$prefix" --cache-dir "$cache" "$@" ;;
  esac
}
export -f s3_cmd
if [ "$S3" = 1 ]; then
  S3_BUCKET=bench
  case $S3_SERVER in
    s3s)
      # shellcheck source=scripts/services.sh
      source scripts/services.sh ''
      out=$(_snap_run_s3s "$WORK/s3s" "$WORK/s3s/data") || { log "cannot start s3s-fs"; exit 1; }
      S3_PIDS+=("${out%% *}")
      S3_EP=${out#* }
      code=$(_snap_http PUT "$S3_EP/$S3_BUCKET" '')
      [ "$code" = 200 ] || { log "cannot create bucket $S3_BUCKET at $S3_EP (HTTP $code)"; exit 1; }
      S3_VERSION="s3s-fs $_SNAP_S3S_VERSION"
      ;;
    moto)
      : "${SNAP_TEST_S3_ENDPOINT:?S3_SERVER=moto needs the test services: source scripts/services.sh start}"
      S3_EP=$SNAP_TEST_S3_ENDPOINT S3_BUCKET=${SNAP_TEST_S3_BUCKET:-snap-test}
      S3_VERSION="moto (one request at a time)"
      ;;
    *) log "S3_SERVER must be s3s or moto"; exit 1 ;;
  esac
  export S3_BUCKET
  # One latency proxy per delay.
  declare -A PROXY_EP
  for d in $DELAYS; do
    pf="$WORK/proxy-$d.port"
    rm -f "$pf"
    python3 benches/latency_proxy.py --target "${S3_EP#http://}" --delay-ms "$d" --port-file "$pf" \
      >"$WORK/proxy-$d.log" 2>&1 &
    S3_PIDS+=("$!")
    for _ in $(seq 1 100); do [ -s "$pf" ] && break; sleep 0.1; done
    [ -s "$pf" ] || { log "latency proxy ($d ms) did not start: $(cat "$WORK/proxy-$d.log")"; exit 1; }
    PROXY_EP[$d]="http://127.0.0.1:$(cat "$pf")"
  done
  S3_SRC_BYTES=$(du -sb "$S3_SRC" | cut -f1)
  S3_SRC_FILES=$(find "$S3_SRC" -type f | wc -l)
  # The single file: the median-sized regular file (ties: first in path order).
  ONE_FILE=$(find "$S3_SRC" -type f -printf '%s\t%p\n' | LC_ALL=C sort -t$'\t' -k1,1n -k2,2 |
    awk -F'\t' -v n="$S3_SRC_FILES" 'NR == int((n + 1) / 2) { print $2 }')
  log "S3 ($S3_VERSION at $S3_EP): $S3_SRC ($S3_SRC_BYTES bytes, $S3_SRC_FILES files); single file $ONE_FILE ($(stat -c %s "$ONE_FILE") bytes)"
  tar -cf - "$S3_SRC" 2>/dev/null | cat >/dev/null
  for ((round = 1; round <= ROUNDS; round++)); do
    for k in 0 1; do
      if (((k + round) % 2 == 1)); then t=snap; else t=restic; fi
      prefix="$t-$round-$(date +%s)"
      cache="$WORK/s3cache-$t"
      rm -rf "$cache"
      log "S3 round $round: $t"
      s3_cmd "$t" init "$S3_EP" "$prefix" "$cache" >/dev/null
      timed "$t" "$round" 6-initial bash -c 's3_cmd "$@"' _ "$t" backup "$S3_EP" "$prefix" "$cache" "$S3_SRC"
      for d in $DELAYS; do
        ep=${PROXY_EP[$d]}
        dd=$(printf '%02d' "$d")
        target="$WORK/restore"
        if fresh_fs "$S3_SRC_BYTES"; then target="$FRESH_MNT/restore"; fi
        timed "$t" "$round" "6-d$dd-restore" bash -c 's3_cmd "$@"' _ "$t" restore "$ep" "$prefix" "$cache" \
          latest --target "$target"
        if diff -r --no-dereference "$S3_SRC" "$target${S3_SRC}" >"$WORK/diff.log" 2>&1; then
          rec "$t" "$round" "6-d$dd-restore" verified 1
        else
          rec "$t" "$round" "6-d$dd-restore" verified 0
          log "S3 RESTORE DIFFERS for $t: $(head -3 "$WORK/diff.log")"
        fi
        rm -rf "$target"
        one="$WORK/restore-one"
        rm -rf "$one" "$WORK/s3cache-empty"
        timed "$t" "$round" "6-d$dd-1file" bash -c 's3_cmd "$@"' _ "$t" restore "$ep" "$prefix" \
          "$WORK/s3cache-empty" latest --include "$ONE_FILE" --target "$one"
        if cmp -s "$ONE_FILE" "$one$ONE_FILE" && [ "$(find "$one" -type f | wc -l)" = 1 ]; then
          rec "$t" "$round" "6-d$dd-1file" verified 1
        else
          rec "$t" "$round" "6-d$dd-1file" verified 0
          log "S3 SINGLE-FILE RESTORE WRONG for $t: $(find "$one" -type f | head -3)"
        fi
        rm -rf "$one" "$WORK/s3cache-empty"
        timed "$t" "$round" "6-d$dd-nochange" bash -c 's3_cmd "$@"' _ "$t" backup "$ep" "$prefix" "$cache" "$S3_SRC"
      done
      rm -rf "$cache"
    done
  done
  VERSIONS="$VERSIONS; S3 server $S3_VERSION"
  export S3_INFO="S3 steps (6): \`$S3_SRC\`, $(echo "scale=2; $S3_SRC_BYTES / 1000000" | bc) MB in $S3_SRC_FILES files, on $S3_VERSION at 127.0.0.1 through benches/latency_proxy.py (delays $DELAYS ms per request/response exchange); single file \`$ONE_FILE\` ($(stat -c %s "$ONE_FILE") bytes)."
fi
# --- 7. MariaDB nightly dumps ------------------------------------------------
# snap (its own --mysql source: mariadb-dump --single-transaction --quick --routines --events
# --triggers --hex-blob) and restic (`restic backup --stdin` of the same mariadb-dump command)
# back up bench_my_v1 and then bench_my_v2 (v1 after one night: 0.25% of the rows updated,
# 0.1% inserted, 0.1% deleted; benches/mysql_data.py) into a fresh repository each round;
# repository bytes after night 1 and bytes added by night 2. The password goes through an
# option file (0600) that both tools' mariadb-dump read.
if [ "$MYSQL" = 1 ]; then
  : "${SNAP_TEST_MYSQL_PORT:?step 7 needs MariaDB: source scripts/services.sh start (or MYSQL=0)}"
  MYCNF="$WORK/mysql-client.cnf"
  (umask 077 && printf '[client]\nhost=%s\nport=%s\nuser=%s\npassword="%s"\n' "$SNAP_TEST_MYSQL_HOST" \
    "$SNAP_TEST_MYSQL_PORT" "$SNAP_TEST_MYSQL_USER" "$(head -n 1 "$SNAP_TEST_MYSQL_PASSWORD_FILE")" >"$MYCNF")
  my() { mariadb --defaults-extra-file="$MYCNF" "$@"; }
  if [ "${MYSQL_FRESH:-0}" = 1 ] || ! my -e "USE bench_my_v2" 2>/dev/null; then
    log "preparing bench_my_v1 and bench_my_v2 (scale $MYSQL_SCALE)"
    my -e "DROP DATABASE IF EXISTS bench_my_v1; DROP DATABASE IF EXISTS bench_my_v2; CREATE DATABASE bench_my_v1; CREATE DATABASE bench_my_v2"
    python3 benches/mysql_data.py create "$MYSQL_SCALE" | my bench_my_v1
    mariadb-dump --defaults-extra-file="$MYCNF" --single-transaction --routines --triggers bench_my_v1 | my bench_my_v2
    python3 benches/mysql_data.py night 2 "$MYSQL_SCALE" | my bench_my_v2
  fi
  MYSQL_DUMP_BYTES=$(mariadb-dump --defaults-extra-file="$MYCNF" --single-transaction --quick \
    --routines --events --triggers --hex-blob bench_my_v1 | wc -c)
  log "mariadb-dump of bench_my_v1: $MYSQL_DUMP_BYTES bytes"
  MYDUMP="mariadb-dump --defaults-extra-file=$MYCNF --single-transaction --quick --routines --events --triggers --hex-blob"
  for ((round = 1; round <= ROUNDS; round++)); do
    for t in snap restic; do
      case " $TOOLS " in *" $t "*) ;; *) continue ;; esac
      drepo="$WORK/mysql-$t"
      rm -rf "$drepo" "$WORK/cache-snap" "$WORK/cache-restic"
      t_init "$t" "$drepo"
      for night in 1 2; do
        step="7-mysql-dump$night"
        [ "$night" = 2 ] && d1=$(bytes "$drepo")
        if [ "$t" = snap ]; then
          timed "$t" "$round" "$step" env SNAP_REPO="$drepo" SNAP_CACHE_DIR="$WORK/cache-snap" \
            "$SNAP" backup --mysql "db.sql=database=bench_my_v$night option-file=$MYCNF"
        else
          timed_pipe "$t" "$round" "$step" "$MYDUMP bench_my_v$night" bash -c "$(t_stdin_cmd "$t" "$drepo" db.sql)"
        fi
        if [ "$night" = 1 ]; then
          rec "$t" "$round" "$step" repo_bytes "$(bytes "$drepo")"
        else
          rec "$t" "$round" "$step" bytes_added "$(($(bytes "$drepo") - d1))"
        fi
      done
      rm -rf "$drepo"
    done
  done
  export MYSQL_INFO="MariaDB step (7): \`benches/mysql_data.py\` scale $MYSQL_SCALE (posts of real text, users, comments; a view, a trigger, a procedure), dump $MYSQL_DUMP_BYTES bytes; night 2 after 0.25% of the rows updated, 0.1% inserted, 0.1% deleted. $(mariadb --version)."
fi
elapsed=$(($(date +%s) - started))

# --- table -----------------------------------------------------------------
OUT="benches/results/compare-$(date +%Y-%m-%d)${NAME:+-$NAME}.md"
mkdir -p benches/results
python3 - "$RAW" "$SRC" "$SRC_BYTES" "$SRC_FILES" "$ROUNDS" "$VERSIONS" "${DUMP_BYTES:-0}" "$elapsed" "$(nproc)" <<'PY' | tee "$OUT"
import sys, statistics, collections
raw, src, src_bytes, src_files, rounds, versions, dump_bytes, elapsed, cpus = sys.argv[1:]
d = collections.defaultdict(list)
tools = []
for line in open(raw):
    t, r, step, metric, v = line.rstrip("\n").split("\t")
    if t not in tools:
        tools.append(t)
    d[(t, step, metric)].append(float(v))
def med(t, step, metric):
    v = d.get((t, step, metric))
    return statistics.median(v) if v else None
def fmt(x, metric):
    if x is None:
        return "–"
    if metric in ("repo_bytes", "bytes_added"):
        return f"{x/1e6:.1f} MB" if x >= 1e7 else f"{x/1e3:.1f} kB"
    if metric == "verified":
        return "yes" if x == 1 else "NO"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"
print(f"# snap vs restic vs borg — {versions}\n")
if any(step[0] in "12345" for (_, step, _) in d):
  print(f"Source tree (steps 1-3): `{src}`, {int(src_bytes)/1e9:.2f} GB in {src_files} files; warm page cache "
      f"(read once before the first round; caches cannot be dropped here). Nightly dumps: plain `pg_dump` of "
      f"a {int(dump_bytes)/1e6:.0f} MB table of real text lines; 2nd dump after 0.25% updated / 0.1% inserted / 0.1% deleted rows.")
print(f"Medians of {rounds} round(s), tools alternating; {cpus} CPUs shared with other work; total {int(elapsed)//60} min. "
      "Wall/CPU in seconds, RSS = peak resident MiB of the tool process. Ratio = snap / restic (for time and bytes lower is better).\n")
steps = []
for (t, step, metric) in d:
    if (step, metric) not in steps:
        steps.append((step, metric))
order = {"wall": 0, "mb_per_s": 1, "cpu": 2, "rss_mib": 3, "repo_bytes": 4, "bytes_added": 5, "verified": 6, "diff_s": 7}
steps.sort(key=lambda s: (s[0], order.get(s[1], 9)))
print("| step | metric | " + " | ".join(tools) + " | snap/restic |")
print("|---|---|" + "---:|" * len(tools) + "---:|")
for step, metric in steps:
    vals = [med(t, step, metric) for t in tools]
    s, r = med("snap", step, metric), med("restic", step, metric)
    ratio = f"{s/r:.2f}" if s is not None and r and metric != "verified" else "–"
    print(f"| {step} | {metric} | " + " | ".join(fmt(v, metric) for v in vals) + f" | {ratio} |")
import os
s3 = sorted({step for (t, step, metric) in d if step.startswith("6-") and metric == "wall"})
if s3:
    print(f"\n## S3: speed ratio snap/restic (restic wall / snap wall; above 1 = snap faster)\n")
    print(os.environ.get("S3_INFO", "") + "\n")
    print("| step | snap wall s | restic wall s | snap/restic speed | verified (snap, restic) |")
    print("|---|---:|---:|---:|---|")
    for step in s3:
        sw, rw = med("snap", step, "wall"), med("restic", step, "wall")
        ratio = f"{rw/sw:.2f}" if sw and rw else "–"
        ver = ", ".join(fmt(med(t, step, "verified"), "verified") for t in ("snap", "restic"))
        print(f"| {step} | {fmt(sw, 'wall')} | {fmt(rw, 'wall')} | {ratio} | {ver} |")
if os.environ.get("MYSQL_INFO"):
    print("\n" + os.environ["MYSQL_INFO"])
    for t in ("snap", "restic"):
        n1, n2 = med(t, "7-mysql-dump1", "repo_bytes"), med(t, "7-mysql-dump2", "bytes_added")
        if n1 and n2 is not None:
            print(f"- {t}: night 2 added {fmt(n2, 'bytes_added')}, {n2 * 100 / n1:.1f}% of night 1's {fmt(n1, 'repo_bytes')}")
print(f"\nRaw measurements: one line per tool/round/step/metric in the run's raw.tsv.")
PY
cp "$RAW" "${OUT%.md}.raw.tsv"
log "table written to $OUT (work dir $WORK)"
