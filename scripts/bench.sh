#!/usr/bin/env bash
# make bench-<name>: start the services benchmark <name> needs, build it, run `bench <name>`.
# What each benchmark measures, its knobs (BENCH_* variables) and its report: tests/src/bench/.
#
#     scripts/bench.sh login|list|cache|enrichment|coldstart|latency|filters

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

name=${1:-}
case $name in
login | list | cache | enrichment | coldstart | latency | filters) ;;
*) die "usage: scripts/bench.sh login|list|cache|enrichment|coldstart|latency|filters" ;;
esac
mkdir -p .local

# Every process the run starts carries this marker (the emulator and its functions inherit it;
# the bench names the functions it starts itself with it as their log stream), so that none
# outlives a run that failed half-way.
marker="bench-$(random_hex 12)"
export BENCH_RUN_MARKER=$marker
add_cleanup "stop_by_env 'BENCH_RUN_MARKER=$marker' 'leftover bench processes'; stop_by_env 'AWS_LAMBDA_LOG_STREAM_NAME=$marker' 'leftover function processes'"

step "Services for bench $name" "set TEST_DATABASE_URL / TEST_REDIS_URL to reachable servers, or unset them to get throwaway ones"
case $name in
login | list | cache | enrichment | latency | filters) ensure_postgres ;;
esac
case $name in
login | list | cache | latency | filters)
	ensure_venv
	ensure_cargo_lambda
	;;
esac
case $name in
cache)
	need_cmd hey hey
	need_cmd redis-cli redis-tools
	# A private server, so that its statistics count only this benchmark's commands.
	start_redis
	export BENCH_REDIS_URL=$STARTED_REDIS_URL
	;;
latency)
	# AWS's runtime interface emulator comes with the SAM CLI (samcli/local/rapid/).
	ensure_sam_cli
	;;
coldstart)
	need_cmd gzip
	start_moto "$REPO_ROOT/.local/bench-coldstart-moto.log"
	start_tls_postgres
	ensure_redis
	;;
esac

case $name in
coldstart)
	# The functions and the baseline alone in one invocation, so that their features are
	# unified as in a deployment build, not with the test crate's.
	mapfile -t packages < <(for toml in functions/*/Cargo.toml; do awk -F'"' '/^name = / { print $2; exit }' "$toml"; done)
	release_build_packages "${packages[@]}" hello-baseline
	step "Build: the bench binary" "fix the build errors above"
	cargo build --release --locked -p e2e --bin bench
	;;
enrichment)
	step "Build: the bench binary" "fix the build errors above"
	cargo build --release --locked -p e2e --bin bench
	;;
latency)
	# Debug, as `make run` and the figures of issue 15: the functions, the bench and
	# stream-baseline (upstream lambda_http streaming) side by side in target/debug.
	step "Build: cargo build --workspace --locked (debug)" "fix the build errors above"
	cargo build --workspace --locked
	# Run from a copy: another worktree building into the same target directory would
	# otherwise swap the binaries under the run.
	bin_dir=.local/bench-latency-bin
	rm -rf "$bin_dir" && mkdir -p "$bin_dir"
	cp "$CARGO_TARGET_DIR"/debug/{bench,list-favorites,get-favorite,stream-baseline} "$bin_dir"/
	;;
*) release_build bench migrate list-favorites ;;
esac

# On two cores a concurrent build or test run would skew every figure: wait for it (bounded).
case $name in
cache | coldstart | latency)
	step "Waiting while a build (rustc) or scripts/test.sh runs (at most ${TEST_WAIT_SECONDS}s)"
	wait_for_tests 'scripts/test\.sh|bin/rustc ' "a build (rustc) or scripts/test.sh"
	[ -z "$TESTS_RUNNING_NOTE" ] || export BENCH_NOTE=$TESTS_RUNNING_NOTE
	;;
esac

step "bench $name" "the lines above say what failed"
bench=$CARGO_TARGET_DIR/release/bench
[ "$name" != latency ] || bench=$REPO_ROOT/.local/bench-latency-bin/bench
"$bench" "$name"
step_done
