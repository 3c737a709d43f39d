#!/usr/bin/env bash
# Scale test: does a catalog of 50 million blobs slow snap down or make it
# bigger? Runs, on the same tree:
#   empty:  init a repository; initial backup of SRC; no-change backup of SRC
#   big:    init a repository; fill its catalog with BLOBS synthetic blobs
#           (examples/scale_catalog.rs: one real, empty index object in the
#           repository, and BLOBS catalog rows attached to its id, so
#           sync_catalog keeps them — see that file for why this is faithful);
#           initial backup of SRC; no-change backup of SRC
# and prints wall seconds, CPU seconds and peak RSS (MiB) of each backup, with
# the ratio big / empty. Table on stdout and in benches/results/scale-<date>.md.
#
# Knobs: SRC (default ~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu, 1.3 GB),
#        BLOBS (default 50000000), ROUNDS (default 1), WORK (scratch dir).
# The catalog of 50M blobs takes about 3.5 GB of disk under WORK; SRC is read
# once first so both runs see a warm page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${SRC:-$HOME/.rustup/toolchains/stable-x86_64-unknown-linux-gnu}"
SRC=$(cd "$SRC" && pwd -P)
BLOBS="${BLOBS:-50000000}"
ROUNDS="${ROUNDS:-1}"
WORK="${WORK:-$(mktemp -d /tmp/snap-scale.XXXXXX)}"
mkdir -p "$WORK"
export SNAP_PASSWORD=scale-bench
log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cargo build --release --quiet --bin snap --example scale_catalog
SNAP=$PWD/target/release/snap
FILL=$PWD/target/release/examples/scale_catalog
RAW="$WORK/raw.tsv"
: >"$RAW"
log "warm-up read of $SRC"
tar -cf - "$SRC" 2>/dev/null | cat >/dev/null
timed() { # CASE ROUND STEP CMD...
  local c=$1 r=$2 s=$3
  shift 3
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@" >"$WORK/out.log" 2>&1 ||
    { log "FAILED $c $s"; tail -5 "$WORK/out.log" >&2; return 1; }
  read -r wall user sys rss <"$WORK/time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$r" "$s" "$wall" "$(echo "$user + $sys" | bc)" "$((rss / 1024))" >>"$RAW"
  log "$c $s: ${wall}s wall, $(echo "$user + $sys" | bc)s cpu, $((rss / 1024)) MiB"
}
fill_s=""
for ((round = 1; round <= ROUNDS; round++)); do
  for c in empty big; do
    repo="$WORK/repo-$c" cache="$WORK/cache-$c"
    rm -rf "$repo" "$cache"
    SNAP_REPO=$repo "$SNAP" init >/dev/null 2>&1
    if [ "$c" = big ]; then
      t0=$(date +%s)
      "$FILL" "$repo" "$cache" "$BLOBS" >&2
      fill_s=$(($(date +%s) - t0))
    fi
    export SNAP_REPO=$repo SNAP_CACHE_DIR=$cache
    timed "$c" "$round" initial "$SNAP" backup "$SRC"
    timed "$c" "$round" no-change "$SNAP" backup "$SRC"
    unset SNAP_REPO SNAP_CACHE_DIR
    cat_bytes=$(du -sb "$cache" | cut -f1)
    log "$c: catalog dir $cat_bytes bytes"
    [ "$round" = "$ROUNDS" ] && [ "$c" = big ] || rm -rf "$repo" "$cache"
  done
done
OUT="benches/results/scale-$(date +%Y-%m-%d).md"
mkdir -p benches/results
python3 - "$RAW" "$SRC" "$BLOBS" "$ROUNDS" "$fill_s" "$(du -sb "$SRC" | cut -f1)" <<'PY' | tee "$OUT"
import sys, statistics, collections
raw, src, blobs, rounds, fill_s, src_bytes = sys.argv[1:]
d = collections.defaultdict(list)
for line in open(raw):
    c, r, s, wall, cpu, rss = line.split("\t")
    for m, v in (("wall s", wall), ("cpu s", cpu), ("peak RSS MiB", rss)):
        d[(s, m, c)].append(float(v))
print(f"# snap scale test: catalog of {int(blobs):,} blobs vs empty repository\n")
print(f"Tree `{src}` ({int(src_bytes)/1e9:.2f} GB), warm page cache, medians of {rounds} round(s); "
      f"filling the catalog took {fill_s} s (not counted).\n")
print(f"| backup | metric | empty repo | {int(blobs):,}-blob catalog | big / empty |")
print("|---|---|---:|---:|---:|")
for s in ("initial", "no-change"):
    for m in ("wall s", "cpu s", "peak RSS MiB"):
        e, b = statistics.median(d[(s, m, "empty")]), statistics.median(d[(s, m, "big")])
        print(f"| {s} | {m} | {e:.2f} | {b:.2f} | {b/e:.2f} |")
PY
log "table written to $OUT (work dir $WORK)"
