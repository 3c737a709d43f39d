#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target of snap's repository decoders for
# FUZZ_SECONDS seconds each (default 20; 8 targets = under 3 minutes plus the
# build), starting from the committed seed corpus fuzz/corpus/<target>/seed-*.
# Fails if any target crashes, leaks past the RSS limit or times out on an
# input; the reproducer is then in fuzz/artifacts/<target>/.
#
# Usage: fuzz/run.sh [TARGET...]          (default: all targets)
# Env:   FUZZ_SECONDS   seconds per target (default 20)
#
# Toolchain: cargo-fuzz needs nightly for the sanitizer flags. A nightly
# toolchain is used when rustup has one; otherwise the stable compiler is used
# with RUSTC_BOOTSTRAP=1 (same flags, no download). cargo-fuzz is installed
# with `cargo install --locked cargo-fuzz` when missing.
#
# Not covered yet: the lease (lock) object decoder lands with the lifecycle
# branch; add a target `lock` here and in fuzz/Cargo.toml after the merge.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
ALL_TARGETS=(config keyfile pack blob index tree snapshot chunker)
if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    TARGETS=("${ALL_TARGETS[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==== installing cargo-fuzz (cargo install --locked cargo-fuzz)"
    cargo install --locked cargo-fuzz
fi

TOOLCHAIN=()
if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
    TOOLCHAIN=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

# Debug assertions on (-a): integer overflow in a decoder is a crash too.
BUILD_FLAGS=(--debug-assertions)
echo "==== building fuzz targets (cargo ${TOOLCHAIN[*]:-} fuzz build ${BUILD_FLAGS[*]})"
cargo "${TOOLCHAIN[@]}" fuzz build "${BUILD_FLAGS[@]}"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/snap-fuzz.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

declare -A EXECS
failed=()
for t in "${TARGETS[@]}"; do
    max_len=65536
    [ "$t" = chunker ] && max_len=262144
    mkdir -p "$SCRATCH/$t" "artifacts/$t"
    log="$SCRATCH/$t.log"
    echo "==== fuzz target $t: ${SECONDS_PER_TARGET}s"
    # New inputs go to the scratch corpus (first directory); the committed
    # seeds are only read.
    set +e
    cargo "${TOOLCHAIN[@]}" fuzz run "${BUILD_FLAGS[@]}" "$t" "$SCRATCH/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb=2048 \
        -malloc_limit_mb=1024 \
        -timeout=10 \
        -max_len="$max_len" \
        -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    EXECS[$t]=${runs:-?}
    if [ "$rc" -ne 0 ]; then
        echo "!!!! fuzz target $t FAILED (exit $rc); last lines of its log:"
        tail -40 "$log"
        failed+=("$t")
    else
        grep -E '^Done [0-9]+ runs' "$log" | tail -1 || true
    fi
done

echo "==== fuzz executions per target (${SECONDS_PER_TARGET}s each)"
for t in "${TARGETS[@]}"; do
    printf '  %-10s %s\n' "$t" "${EXECS[$t]}"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
