#!/usr/bin/env bash
# Static checks of template.yaml, offline: SAM's own validation with its linter, cfn-lint,
# checkov's CloudFormation policies, and each function role's least privilege (check-iam.py).
# Runs every check, then exits non-zero if any failed.
#
#   infra/check-template.sh            # from anywhere in the repo
#   VENV=/path/to/venv SAM_VENV=/path/to/sam-venv infra/check-template.sh
#
# VENV holds cfn-lint and checkov, SAM_VENV holds SAM CLI (it pins its own boto3, hence two
# venvs). Relative paths are taken from the repository root.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2

VENV="${VENV:-.venv}"
SAM_VENV="${SAM_VENV:-.venv-sam}"
template="${TEMPLATE:-template.yaml}"

# sam validate needs a region even offline; no telemetry from CI or laptops.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0

for tool in "$SAM_VENV/bin/sam" "$VENV/bin/cfn-lint" "$VENV/bin/checkov"; do
    if [ ! -x "$tool" ]; then
        echo "check-template: $tool not found (set VENV / SAM_VENV)" >&2
        exit 2
    fi
done

failed=()

run() {
    local name="$1"
    shift
    echo "== $name"
    if "$@"; then
        echo "-- $name: ok"
    else
        echo "-- $name: FAILED"
        failed+=("$name")
    fi
}

run "sam validate --lint" "$SAM_VENV/bin/sam" validate --lint -t "$template"
run "cfn-lint" "$VENV/bin/cfn-lint" --format parseable "$template"
# --quiet prints failed checks only; --compact drops the code excerpts;
# skipped checks (with the reasons in the template) are not listed.
run "checkov" "$VENV/bin/checkov" -f "$template" --framework cloudformation \
    --quiet --compact --skip-download --output cli

# Least privilege, per function (infra/check-iam.py), and proof that the check bites.
run "iam least privilege" "$VENV/bin/python" infra/check-iam.py "$template"
run "iam check self-test" "$VENV/bin/python" infra/check-iam.py --self-test "$template"

if [ "${#failed[@]}" -gt 0 ]; then
    echo "check-template: failed: ${failed[*]}" >&2
    exit 1
fi
echo "check-template: all checks passed"
