#!/usr/bin/env bash
# make stack: the deployed shape on http://127.0.0.1:${STACK_PORT:-9100}/v1 until Ctrl-C.
# template.yaml through the SAM transform, its resources on local stand-ins (a moto server
# enforcing IAM, Postgres and Redis over TLS), every function's binary under AWS's runtime
# interface emulator with the template's environment and permissions, a REST gateway in front
# (tests/src/stack/, README "The deployed shape"). Knobs: STACK_PORT, STACK_TEMPLATE,
# STACK_PARAMETERS ("Name=value ..."), STACK_NAME.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export STACK_PORT="${STACK_PORT:-9100}"

step "Tools: .venv with the SAM CLI (transform, aws-lambda-rie) and moto" "delete .venv and rerun to rebuild it"
ensure_sam_cli
ensure_moto_installed
port_open 127.0.0.1 "$STACK_PORT" && die "port $STACK_PORT on 127.0.0.1 is in use; pick another: STACK_PORT=9101 make stack"

step "Build: cargo build --workspace --bins --locked (debug)" "fix the build errors above"
cargo build --workspace --bins --locked

step "Stand-ins: Postgres and Redis over TLS, moto enforcing IAM" "see the messages above"
mkdir -p .local/stack
start_tls_postgres
start_redis tls
start_stack_moto "$REPO_ROOT/.local/stack/moto.log"

step "Stack: deploying template.yaml (Ctrl-C stops it and every stand-in)" "the line above names the function and the variable or permission"
"$CARGO_TARGET_DIR/debug/stack" serve
