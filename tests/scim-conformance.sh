#!/usr/bin/env bash
# Runs an independent SCIM 2.0 conformance checker (scim2-tester, pinned in tests/tools.sh)
# against the project's Notion simulator, started here with `enroll simulate` on a free
# loopback port and an empty workspace. Exits non-zero when a check fails that is not one of
# the deliberate deviations listed in tests/scim_conformance.py. Results: notes in the README.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/tools.sh
cargo build --quiet --bin enroll
enroll="${CARGO_TARGET_DIR:-target}/debug/enroll"
python=.venv/bin/python

scratch=$(mktemp -d)
sim=
cleanup() {
    if [ -n "$sim" ]; then
        kill "$sim" 2>/dev/null || true
        wait "$sim" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=$("$python" -c 'import uuid; print(uuid.uuid4().hex)')
admin=$("$python" -c 'import uuid; print(uuid.uuid4().hex)')
echo '{}' > "$scratch/empty.json"
ENROLL_SIM_ADMIN_TOKEN="$admin" "$enroll" simulate --port "$port" --seed "$scratch/empty.json" \
    --scim-token "$token" > "$scratch/simulator.log" 2>&1 &
sim=$!

base="http://127.0.0.1:$port/scim/v2"
ready=$("$python" - "$base" "$token" <<'EOF'
import sys, time, urllib.request
base, token = sys.argv[1], sys.argv[2]
request = urllib.request.Request(f"{base}/ServiceProviderConfig",
                                 headers={"Authorization": f"Bearer {token}"})
for _ in range(100):
    try:
        urllib.request.urlopen(request, timeout=1)
        print("yes")
        break
    except OSError:
        time.sleep(0.1)
else:
    print("no")
EOF
)
if [ "$ready" != yes ]; then
    echo "the simulator did not start:" >&2
    cat "$scratch/simulator.log" >&2
    exit 1
fi

"$python" tests/scim_conformance.py "$base" "$token"
