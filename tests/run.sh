#!/usr/bin/env bash
# Every test of the project, from a fresh clone: installs the tools it needs, checks formatting
# and lints, runs the Rust test suite (unit tests, the simulator, moto-backed AWS tests, the
# Lambda binaries under cargo lambda, the embedded pipeline, and the lifecycle and a kill -9 of
# `enroll dev` against an independent SCIM 2.0 server, scim2-server), lints the SAM template,
# and runs the demo. Servers the tests start (moto, scim2-server, cargo lambda watch,
# simulators) are stopped by the tests themselves; this script removes what it created.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "tools"
bash tests/tools.sh
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1
# The AWS tests start their own moto server unless one is given.
unset AWS_ENDPOINT_URL

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
cargo test --workspace --no-fail-fast

step "scim conformance (scim2-tester against the simulator)"
bash tests/scim-conformance.sh

step "template"
bash infra/check-template.sh

step "demo"
cargo run --quiet --bin enroll -- demo
