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
#   NAME     suffix for the result file name (compare-<date>-NAME.md)
#   WORK     scratch directory for repositories and restores (default a new /tmp/snap-compare.*;
#            all repositories live on the same filesystem)
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
TOOLS="${TOOLS:-snap restic borg-lz4 borg-zstd3}"
DUMPS="${DUMPS:-1}"
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
log "building snap (release)"
cargo build --release --quiet
SNAP="$ROOT/target/release/snap"
VERSIONS="snap $(git rev-parse --short HEAD); $(restic version | cut -d' ' -f1-2); $(borg --version)"

if [ "$DUMPS" = 1 ]; then
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
# next restore (RESTORE_FS=fresh, the default); returns 1 and leaves
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
  truncate -s "$((SRC_BYTES * 2 + (1 << 30)))" "$img" &&
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
log "warm-up read of $SRC ($SRC_BYTES bytes, $SRC_FILES files)"
tar -cf - "$SRC" 2>/dev/null | cat >/dev/null

# --- rounds ----------------------------------------------------------------
read -r -a tools <<<"$TOOLS"
n=${#tools[@]}
started=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
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
print(f"\nRaw measurements: one line per tool/round/step/metric in the run's raw.tsv.")
PY
cp "$RAW" "${OUT%.md}.raw.tsv"
log "table written to $OUT (work dir $WORK)"
