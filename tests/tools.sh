#!/usr/bin/env bash
# Installs the Python tools the test suite drives, into project-local virtual environments.
# Idempotent: a venv that already has the pinned versions is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

# scim2-server: an independent, strict RFC 7643/7644 server, the second SCIM workspace
# (tests/src/scim_server.rs).
# scim2-tester: an independent SCIM conformance checker, run on the simulator (tests/scim-conformance.sh).
# standardwebhooks: the Standard Webhooks reference library, verifying enroll's outbound events
# (tests/outbound_receiver.py).
TOOLS="moto[server]==5.2.5 cargo-lambda==1.9.2 ziglang==0.17.1 cfn-lint==1.58.0 checkov==3.3.30 scim2-server==0.8.3 scim2-tester[httpx2]==0.5.2 standardwebhooks==1.1.0"
SAM="aws-sam-cli==1.170.0"

ensure_venv() {
    local dir=$1 stamp=$1/.enroll-tools; shift
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$*" ]; then
        return
    fi
    echo "installing into $dir: $*"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$*" > "$stamp"
}

# SAM CLI pins its own boto3, so it gets a venv of its own.
ensure_venv .venv $TOOLS
ensure_venv .venv-sam $SAM

# Headless Chromium and its WebDriver for the console's browser tests
# (tests/tests/console_browser.rs), from Debian; the package index is refreshed only when the
# install fails without it.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "installing chromium and chromium-driver"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
    $SUDO apt-get install -y --no-install-recommends chromium chromium-driver \
        || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends chromium chromium-driver; }
fi
