#!/usr/bin/env bash
# Scale test (issue #15): peak RSS and time of each command on a repository
# indexing BLOBS synthetic blobs, at each size in SIZES, to show bounded
# memory and linear time. For each size:
#   init a local repository; examples/scale_repo.rs fills it with BLOBS
#   synthetic blobs (real index objects, sparse packs, a real snapshot whose
#   trees reference half of them; see that file for what is faithful) and
#   syncs the catalog; then, timed:
#     check            structure check (reads every index object)
#     backup           a real backup of SRC
#     restore          restore of that backup (latest) to a scratch dir
#     copy --latest    copy of that backup to a fresh repository
#     repair snapshots walks every snapshot, looks up every referenced blob
#     prune            marks the unreferenced half of the synthetic packs
#     repair index     reads every pack header, rewrites the index, then
#                      rebuilds the catalog (last: it costs a full sync)
#   (STEPS selects and orders them; default all, in this order)
#   and, if BEFORE names another snap binary and the size is at most
#   BEFORE_MAX blobs, check and prune with it too (prune on a copy of the
#   repository and cache made before any command ran).
# Prints wall s, CPU s (user+sys) and peak RSS (MiB, GNU time %M) per step;
# the table goes to stdout and benches/results/scale-<date>.md.
#
# Knobs: SIZES (default "5000000 50000000"), SRC (default ~/.cargo/registry/src),
#        STEPS (default "check backup restore copy repair-snapshots prune repair-index"),
#        BEFORE (path of a snap binary built from older code; default none),
#        BEFORE_MAX (default 5000000), WORK (scratch dir),
#        REPORT_FROM ("raw.tsv files" of earlier runs, e.g. one per size run
#        in parallel: skip the runs and print their table).
# Disk: about 60 bytes of catalog, 45 of index objects and 45 of pack
# headers per blob (50M: ~8 GB), plus the backup of SRC and its restore;
# the packs' data is sparse.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="${SIZES:-5000000 50000000}"
STEPS="${STEPS:-check backup restore copy repair-snapshots prune repair-index}"
SRC="${SRC:-$HOME/.cargo/registry/src}"
SRC=$(cd "$SRC" && pwd -P)
BEFORE="${BEFORE:-}"
BEFORE_MAX="${BEFORE_MAX:-5000000}"
WORK="${WORK:-$(mktemp -d /tmp/snap-scale.XXXXXX)}"
TARGET="${CARGO_TARGET_DIR:-target}"
mkdir -p "$WORK"
export SNAP_PASSWORD=scale-bench SNAP_FROM_PASSWORD=scale-bench
log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cargo build --release --quiet --bin snap --example scale_repo
SNAP=$TARGET/release/snap
GEN=$TARGET/release/examples/scale_repo
RAW="$WORK/raw.tsv"
: >"$RAW"
[ -n "${REPORT_FROM:-}" ] || { log "warm-up read of $SRC"; tar -cf - "$SRC" 2>/dev/null | cat >/dev/null; }
timed() { # SIZE STEP CMD...
  local n=$1 s=$2
  shift 2
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@" >"$WORK/out.log" 2>&1 ||
    { log "FAILED $n $s"; tail -5 "$WORK/out.log" >&2; return 1; }
  read -r wall user sys rss <"$WORK/time"
  printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$s" "$wall" "$(echo "$user + $sys" | bc)" "$((rss / 1024))" >>"$RAW"
  log "$n $s: ${wall}s wall, $(echo "$user + $sys" | bc)s cpu, $((rss / 1024)) MiB"
}
[ -n "${REPORT_FROM:-}" ] && { cat $REPORT_FROM >"$RAW"; SIZES=""; }
for n in $SIZES; do
  repo="$WORK/repo-$n" cache="$WORK/cache-$n"
  rm -rf "$repo" "$cache" "$WORK/before-$n" "$WORK/copy-$n" "$WORK/restore-$n"
  SNAP_REPO=$repo "$SNAP" init >/dev/null 2>&1
  timed "$n" generate "$GEN" "$repo" "$cache" "$n"
  log "$(tail -1 "$WORK/out.log")"
  if [ -n "$BEFORE" ] && [ "$n" -le "$BEFORE_MAX" ]; then
    mkdir -p "$WORK/before-$n"
    cp -a --sparse=always "$repo" "$cache" "$WORK/before-$n/"
  fi
  export SNAP_REPO=$repo SNAP_CACHE_DIR=$cache
  for step in $STEPS; do
    case $step in
      check) timed "$n" check "$SNAP" check ;;
      backup) timed "$n" backup "$SNAP" backup "$SRC" ;;
      restore)
        timed "$n" restore "$SNAP" restore latest --target "$WORK/restore-$n"
        rm -rf "$WORK/restore-$n" ;;
      copy)
        SNAP_REPO="$WORK/copy-$n" "$SNAP" init >/dev/null 2>&1
        timed "$n" "copy --latest" "$SNAP" --repo "$WORK/copy-$n" copy --from "$repo" --latest
        rm -rf "$WORK/copy-$n" ;;
      repair-snapshots) timed "$n" "repair snapshots" "$SNAP" repair snapshots ;;
      prune) timed "$n" prune "$SNAP" prune ;;
      repair-index) timed "$n" "repair index" "$SNAP" repair index ;;
      *) log "unknown step $step"; exit 2 ;;
    esac
  done
  if [ -d "$WORK/before-$n" ]; then
    export SNAP_REPO=$WORK/before-$n/repo-$n SNAP_CACHE_DIR=$WORK/before-$n/cache-$n
    timed "$n" "check (before)" "$BEFORE" check
    timed "$n" "prune (before)" "$BEFORE" prune
    rm -rf "$WORK/before-$n"
  fi
  unset SNAP_REPO SNAP_CACHE_DIR
  log "$n: repository $(du -sh "$repo" | cut -f1), cache $(du -sh "$cache" | cut -f1)"
  rm -rf "$repo" "$cache"
done
OUT="${OUT:-benches/results/scale-$(date +%Y-%m-%d).md}"
mkdir -p benches/results
python3 - "$RAW" "$SRC" "$(du -sb "$SRC" | cut -f1)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY' | tee "$OUT"
import sys, collections
raw, src, src_bytes, cpus, load = sys.argv[1:]
rows = collections.OrderedDict()
sizes = []
for line in open(raw):
    n, s, wall, cpu, rss = line.rstrip("\n").split("\t")
    if n not in sizes:
        sizes.append(n)
    rows.setdefault(s, {})[n] = (float(wall), float(cpu), int(rss))
print("# snap scale test: bounded memory, linear time (issue #15)\n")
print(f"Synthetic repositories from `examples/scale_repo.rs`; backup source `{src}` "
      f"({int(src_bytes)/1e9:.2f} GB). {cpus} cores, shared: load average {load} at the end, "
      "so wall times are noisy; CPU s is user + sys.\n")
hdr = "| step | " + " | ".join(f"{int(n):,} blobs: wall s / CPU s / peak RSS MiB" for n in sizes)
if len(sizes) == 2:
    hdr += " | CPU ratio"
print(hdr + " |")
print("|---|" + "---:|" * (len(sizes) + (1 if len(sizes) == 2 else 0)))
for s, d in rows.items():
    cells = [f"{d[n][0]:.1f} / {d[n][1]:.1f} / {d[n][2]}" if n in d else "—" for n in sizes]
    if len(sizes) == 2:
        a, b = d.get(sizes[0]), d.get(sizes[1])
        cells.append(f"{b[1]/max(a[1],0.01):.1f}" if a and b else "—")
    print(f"| {s} | " + " | ".join(cells) + " |")
PY
log "table written to $OUT (work dir $WORK)"
