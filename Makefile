# The two commands a newcomer needs (see README.md), and a few conveniences.
.PHONY: demo test dev tools

# Run the whole flow locally: webhooks in, Notion Groups and sales records out, with checks.
demo:
	cargo run --quiet --bin enroll -- demo

# Every test: installs its tools, starts and stops its servers, cleans up.
test:
	bash tests/run.sh

dev:
	cargo run --quiet --bin enroll -- dev

tools:
	bash tests/tools.sh
