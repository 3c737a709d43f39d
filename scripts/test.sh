#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): test services, rustfmt, clippy, cargo test,
# and the fuzz smoke run (fuzz/run.sh) when there is one.
#
# Usage: scripts/test.sh [extra arguments for `cargo test --all-targets`]
# With CI=true, integration tests fail (instead of skipping) when a test service is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# CI is passed on to cargo and the tests as it is (exported only if it is set at all).
if [ -n "${CI+x}" ]; then
    export CI
fi
# A rustup toolchain that is installed but not on PATH (e.g. a bare CI environment).
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

SUITE_START=$(date +%s)
STEP_START=$SUITE_START
STEP_NAME=''

banner() {
    local now
    now=$(date +%s)
    if [ -n "$STEP_NAME" ]; then
        printf '==== done: %s (%ss)\n' "$STEP_NAME" "$((now - STEP_START))"
    fi
    STEP_NAME=$1
    STEP_START=$now
    printf '\n==================================================================\n'
    printf '==== %s\n' "$1"
    printf '==================================================================\n'
}

SERVICES_STARTED=0
RUN_DIR=''
on_exit() {
    local rc=$?
    set +e
    if [ "$rc" -eq 0 ] && [ -n "$STEP_NAME" ]; then
        printf '==== done: %s (%ss)\n' "$STEP_NAME" "$(($(date +%s) - STEP_START))"
    fi
    if [ "$SERVICES_STARTED" = 1 ] && [ "${SNAP_TEST_SERVICES_REUSED:-0}" != 1 ]; then
        printf '\n==== stopping test services\n'
        bash scripts/services.sh stop
    fi
    if [ -n "${RUN_DIR:-}" ]; then
        rm -rf "$RUN_DIR"
    fi
    if [ "$rc" -eq 0 ]; then
        printf '\n==== all steps passed in %ss\n' "$(($(date +%s) - SUITE_START))"
    else
        printf '\n==== FAILED during: %s (exit %s, after %ss)\n' "${STEP_NAME:-setup}" "$rc" \
            "$(($(date +%s) - SUITE_START))" >&2
    fi
    exit "$rc"
}
trap on_exit EXIT
# Stop the services on Ctrl-C / termination too (the EXIT trap does the work).
trap 'exit 130' INT
trap 'exit 143' TERM

banner 'test services (PostgreSQL, S3, MariaDB, Chromium)'
# Each run keeps its services' state in a directory of its own, so two runs on one machine
# neither reuse nor stop each other's services (set SNAP_TEST_STATE to share a state file,
# e.g. the one `scripts/services.sh start` uses by default, on purpose).
if [ -z "${SNAP_TEST_STATE:-}" ]; then
    RUN_DIR=$(mktemp -d /tmp/snap-test-run.XXXXXX)
    export SNAP_TEST_STATE="$RUN_DIR/services.env"
fi
# Set before starting, so that services left half-started by an interruption are stopped too
# (services that were already running and healthy are reused and left running).
SERVICES_STARTED=1
# shellcheck source=scripts/services.sh
source scripts/services.sh start

banner 'cargo fmt --all -- --check'
cargo fmt --all -- --check

banner 'cargo clippy --all-targets -- -D warnings'
cargo clippy --all-targets -- -D warnings

banner "cargo test --all-targets $*"
cargo test --all-targets --no-fail-fast "$@"

if [ -f fuzz/run.sh ] && [ -x fuzz/run.sh ]; then
    banner 'fuzz/run.sh'
    fuzz/run.sh
fi
