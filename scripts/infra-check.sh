#!/usr/bin/env bash
# make infra-check: the deployment template checked offline (no AWS account, no credentials).
#
#   scripts/infra-check.sh          everything below
#   scripts/infra-check.sh lint     cfn-lint, sam validate --lint
#   scripts/infra-check.sh build    sam build of every function
#
# lint: cfn-lint and `sam validate --lint` must be clean. The template against the code (each
#   function's environment and permissions, functions/, infra/openapi.yaml, the local router,
#   the dashboard JSON, samconfig.toml) is a test of `make test`: shared/tests/template.rs.
# build: `sam build` as an operator runs it, with two differences for machines that only have
#   the native target and no network for `rustup target add`:
#   - Architecture=x86_64 instead of the arm64 default (the template's parameter), and
#   - cargo-lambda's `cargo` compiler instead of its zig cross-compiler (CARGO_LAMBDA_COMPILER),
#   so it proves the template builds, not that the binaries run on Amazon Linux 2023 arm64.
#   It builds into the shared CARGO_TARGET_DIR, so only what changed is rebuilt.
#
# Knobs: INFRA_CHECK_FULL_RELEASE=1 builds with the real release profile (fat LTO, one codegen
# unit) instead of the cheap one described at the build step.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned: a newer cfn-lint brings new rules, and with them new findings, on its own schedule.
CFN_LINT_VERSION="${CFN_LINT_VERSION:-1.58.0}"

# SAM CLI: no usage telemetry, no region lookup in ~/.aws; nothing here calls AWS.
export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

ensure_infra_tools() {
	ensure_sam_cli
	if [ ! -x .venv/bin/cfn-lint ]; then
		say "installing cfn-lint $CFN_LINT_VERSION into .venv (pip)"
		.venv/bin/python -m pip install -q --progress-bar off "cfn-lint==$CFN_LINT_VERSION" >&2 ||
			die "pip install cfn-lint failed; retry with: .venv/bin/pip install cfn-lint==$CFN_LINT_VERSION"
	fi
}

check_lint() {
	step "SAM template: cfn-lint template.yaml" "fix the findings above; rules: https://github.com/aws-cloudformation/cfn-lint/blob/main/docs/rules.md"
	cfn-lint template.yaml
	say "cfn-lint: no findings"

	step "SAM template: sam validate --lint" "fix the findings above"
	sam validate --lint --template template.yaml
}

check_build() {
	ensure_cargo_lambda
	step "SAM build: sam build (x86_64, cargo compiler, into $CARGO_TARGET_DIR)" "reproduce with: scripts/infra-check.sh build"
	local -a profile=()
	if [ "${INFRA_CHECK_FULL_RELEASE:-0}" != 1 ]; then
		# The release profile (fat LTO, one codegen unit) links each of the nine binaries for
		# minutes on two cores, and LTO changes no line of what this check is about: that the
		# template's build metadata builds every function. The profile itself is exercised by
		# the benchmarks' release builds. INFRA_CHECK_FULL_RELEASE=1 builds with it.
		profile=(CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16)
	fi
	local started=$SECONDS
	env "${profile[@]}" CARGO_LAMBDA_COMPILER=cargo CARGO_TERM_COLOR=never \
		sam build --template template.yaml --build-dir .aws-sam/build \
		--parameter-overrides Architecture=x86_64 --no-cached
	say "sam build took $((SECONDS - started))s"

	# Every function came out as an x86-64 ELF executable named bootstrap.
	local fn bootstrap machine count=0
	for fn in $(.venv/bin/python -c '
import sys
from samcli.yamlhelper import yaml_parse
t = yaml_parse(open("template.yaml").read())
print("\n".join(k for k, r in t["Resources"].items() if r["Type"] == "AWS::Serverless::Function"))'); do
		bootstrap=.aws-sam/build/$fn/bootstrap
		[ -x "$bootstrap" ] || die "sam build produced no executable $bootstrap"
		# ELF e_machine (bytes 18-19, little endian): 0x3e = x86-64, 0xb7 = aarch64.
		machine=$(od -An -tx1 -j18 -N2 "$bootstrap" | tr -d ' \n')
		[ "$machine" = 3e00 ] || die "$bootstrap is not an x86-64 ELF (e_machine $machine)"
		count=$((count + 1))
	done
	say "sam build: $count functions, each an x86-64 bootstrap in .aws-sam/build/"
}

ensure_infra_tools
case "${1:-all}" in
lint) check_lint ;;
build) check_build ;;
all)
	check_lint
	check_build
	;;
*) die "usage: scripts/infra-check.sh [lint|build|all]" ;;
esac
step_done
