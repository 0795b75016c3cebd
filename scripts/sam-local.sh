#!/usr/bin/env bash
# make sam-local: `sam local invoke` of the functions with their events/ files, offline.
#
#   scripts/sam-local.sh                                   every function with an events/ folder
#   scripts/sam-local.sh events/get-favorite/*.json        some events only
#
# What it installs and starts, all on this machine (nothing it runs reaches another address,
# and a firewall counter proves it at the end):
# - Docker: Debian's docker.io; dockerd with its defaults when none runs (stopped on exit).
# - The base image SAM runs a provided.al2023 function on, public.ecr.aws/lambda/provided:
#   al2023-x86_64, made here without a registry: debootstrap --variant=minbase of this
#   machine's Debian release (its glibc runs what cargo builds here) with a local CA in its
#   trust store, then docker import; SAM adds its emulator on top (--skip-pull-image). The
#   rootfs and the CA are cached in $HOME/.cache/favorites/sam-local.
# - AWS: the functions call Secrets Manager and DynamoDB by their real names (the template
#   gives them no endpoint variable, and --env-vars sets only variables the template declares):
#   the containers resolve those names to the Docker bridge (--add-host), where socat ends TLS
#   with a certificate of that CA and relays to moto on 127.0.0.1.
# - Postgres over TLS with a password as RDS Proxy (start_tls_postgres), relayed from the bridge.
# - SAM: no telemetry; its STS call and any other AWS or HTTP(S) call go to a closed local port.
#
# The functions run the debug binaries of `cargo build`, laid out as `sam build` would
# (.aws-sam/local/functions/<fn>/bootstrap beside a copy of template.yaml): no `sam build`.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LAMBDA_IMAGE=public.ecr.aws/lambda/provided:al2023-x86_64
SAM_LOCAL_CACHE=$HOME/.cache/favorites/sam-local
SAM_LOCAL_DIR=$REPO_ROOT/.aws-sam/local
REGION=us-east-1
# The names the AWS SDK calls (us-east-1: the region SAM gives the containers; DynamoDB by
# account, as SAM also sets AWS_ACCOUNT_ID).
AWS_HOSTS=(secretsmanager.$REGION.amazonaws.com dynamodb.$REGION.amazonaws.com 123456789012.ddb.$REGION.amazonaws.com)
# Processes under this group id (SAM) may only reach loopback and the Docker bridge.
OFFLINE_GID=64999

# ensure_dockerd: a Docker engine answering on its socket; starts dockerd when none does.
ensure_dockerd() {
	need_cmd dockerd docker.io
	need_cmd docker docker.io
	docker info >/dev/null 2>&1 && return 0
	is_root || die "no Docker engine answers and only root can start one: sudo dockerd, or start the docker service"
	mkdir -p "$SAM_LOCAL_CACHE"
	local log=$SAM_LOCAL_CACHE/dockerd.log i pid
	say "starting dockerd with its defaults (log $log)"
	setsid dockerd >"$log" 2>&1 </dev/null &
	pid=$!
	add_cleanup "stop_tree $pid dockerd"
	for i in $(seq 1 60); do
		docker info >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	tail_log "$log"
	die "dockerd did not start (see above): it needs root, overlayfs or vfs, cgroups and iptables, which a container or a locked-down VM may not give"
}

# ensure_lambda_image: the base image, imported from the cached rootfs (made on first use).
ensure_lambda_image() {
	local codename tar=$SAM_LOCAL_CACHE/rootfs.tar ca=$SAM_LOCAL_CACHE/ca.crt label
	label=$(docker image inspect -f '{{ index .Config.Labels "favorites.ca" }}' "$LAMBDA_IMAGE" 2>/dev/null || true)
	[ -f "$ca" ] && [ "$label" = "$(sha256sum <"$ca" | cut -c1-16)" ] && return 0
	if [ ! -f "$tar" ] || [ ! -f "$ca" ]; then
		need_cmd debootstrap
		need_cmd openssl
		codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
		local root
		root=$(mktemp -d /tmp/favorites-rootfs.XXXXXX)
		add_cleanup "rm -rf '$root'"
		say "debootstrap --variant=minbase $codename (a few minutes, once)"
		debootstrap --variant=minbase "$codename" "$root" "$(apt_mirror)" >"$root.log" 2>&1 || {
			tail_log "$root.log"
			die "debootstrap failed (see above)"
		}
		rm -f "$root.log"
		say "a local CA for the AWS endpoints the containers call (trusted in the image only)"
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=favorites sam-local CA" \
			-keyout "$SAM_LOCAL_CACHE/ca.key" -out "$ca" 2>/dev/null
		chmod 600 "$SAM_LOCAL_CACHE/ca.key"
		mkdir -p "$root/etc/ssl/certs"
		cp "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
		tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
	fi
	say "docker import $tar as $LAMBDA_IMAGE"
	docker import -c "LABEL favorites.ca=$(sha256sum <"$ca" | cut -c1-16)" "$tar" "$LAMBDA_IMAGE" >/dev/null
}

# apt_mirror: the Debian mirror apt uses here (debootstrap's default when none is found).
apt_mirror() {
	cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
		awk '/^URIs:/ { print $2; exit } /^deb / { print ($2 ~ /^\[/ ? $3 : $2); exit }'
}

# relay NAME LISTEN TARGET: socat from an address on the Docker bridge to a local service.
relay() {
	local name=$1 listen=$2 target=$3 pid
	socat "$listen,fork,reuseaddr" "$target" >"$SAM_LOCAL_DIR/$name.log" 2>&1 </dev/null &
	pid=$!
	add_cleanup "_stop_pid $pid 'relay $name'"
}

# guard_egress: reject and count whatever SAM (run under OFFLINE_GID) or a container sends
# beyond loopback and the Docker bridge; egress_count prints the count.
guard_egress() {
	need_cmd iptables
	iptables -N FAVORITES_SAM_LOCAL 2>/dev/null || iptables -F FAVORITES_SAM_LOCAL
	iptables -A FAVORITES_SAM_LOCAL -d 127.0.0.0/8 -j RETURN
	iptables -A FAVORITES_SAM_LOCAL -d "$BRIDGE_NET" -j RETURN
	iptables -A FAVORITES_SAM_LOCAL -j REJECT
	iptables -I OUTPUT -m owner --gid-owner "$OFFLINE_GID" -j FAVORITES_SAM_LOCAL
	iptables -I DOCKER-USER -i docker0 -j FAVORITES_SAM_LOCAL
	ip6tables -I OUTPUT -m owner --gid-owner "$OFFLINE_GID" ! -d ::1 -j REJECT
	add_cleanup "iptables -D OUTPUT -m owner --gid-owner $OFFLINE_GID -j FAVORITES_SAM_LOCAL; iptables -D DOCKER-USER -i docker0 -j FAVORITES_SAM_LOCAL; iptables -F FAVORITES_SAM_LOCAL; iptables -X FAVORITES_SAM_LOCAL; ip6tables -D OUTPUT -m owner --gid-owner $OFFLINE_GID ! -d ::1 -j REJECT"
}
egress_count() {
	{
		iptables -L FAVORITES_SAM_LOCAL -v -x -n
		ip6tables -L OUTPUT -v -x -n
	} | awk '$3 == "REJECT" { n += $1 } END { print n + 0 }'
}

step "Tools: Docker, the Lambda base image, SAM CLI, socat, moto" "the first run installs docker.io and debootstraps a rootfs"
ensure_dockerd
mkdir -p "$SAM_LOCAL_CACHE" "$SAM_LOCAL_DIR"
started=$SECONDS
ensure_lambda_image
say "base image ready in $((SECONDS - started))s"
ensure_moto_installed
ensure_sam_cli
need_cmd socat
need_cmd psql postgresql-client
BRIDGE_NET=$(docker network inspect bridge -f '{{ (index .IPAM.Config 0).Subnet }}')
BRIDGE_IP=$(ip -4 -o addr show docker0 | awk '{ sub("/.*", "", $4); print $4 }')
[ -n "$BRIDGE_IP" ] || die "the Docker bridge docker0 has no IPv4 address"
say "Docker bridge $BRIDGE_NET, this host at $BRIDGE_IP"

step "Build: the functions (debug), laid out as sam build would" "fix the build errors above"
mapfile -t functions < <(find functions -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
cargo build --locked $(printf -- '-p %s ' "${functions[@]}") -p e2e --bin aws-resources
rm -rf "$SAM_LOCAL_DIR/functions"
cp template.yaml "$SAM_LOCAL_DIR/template.yaml"
for fn in "${functions[@]}"; do
	mkdir -p "$SAM_LOCAL_DIR/functions/$fn"
	ln -f "$CARGO_TARGET_DIR/debug/$fn" "$SAM_LOCAL_DIR/functions/$fn/bootstrap" 2>/dev/null ||
		cp "$CARGO_TARGET_DIR/debug/$fn" "$SAM_LOCAL_DIR/functions/$fn/bootstrap"
done

step "Stand-ins: moto, TLS Postgres, the relays from the Docker bridge" "see the logs in $SAM_LOCAL_DIR"
start_moto "$SAM_LOCAL_DIR/moto.log"
start_tls_postgres "IP:$BRIDGE_IP"
for fn in "${functions[@]}"; do cp "$TEST_TLS_PG_CA" "$SAM_LOCAL_DIR/functions/$fn/database-ca.pem"; done
db_password=$(random_hex 32)
psql -w -X -q -v ON_ERROR_STOP=1 -d "$TEST_TLS_PG_ADMIN_URL" \
	-c "create role favorites login password '$db_password'" -c "create database favorites owner favorites"
db_secret=$(python3 -c 'import json, sys; print(json.dumps({"username": "favorites", "password": sys.argv[1], "engine": "postgres", "host": sys.argv[2], "port": 5432, "dbname": "favorites"}))' "$db_password" "$BRIDGE_IP")
fixture() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' events/fixture.json "$1"; }
resources=$("$CARGO_TARGET_DIR/debug/aws-resources" "favorites-sam-local-$(random_hex 6)" "$(fixture jwt_secret)" "$db_secret")
eval "$resources"
# The endpoints' certificate, from the CA the image trusts.
(
	cd "$SAM_LOCAL_DIR" || exit 1
	openssl req -newkey rsa:2048 -nodes -subj "/CN=${AWS_HOSTS[0]}" -keyout aws.key -out aws.csr
	printf 'subjectAltName=%s\n' "$(printf 'DNS:%s,' "${AWS_HOSTS[@]}" | sed 's/,$//')" >aws.ext
	openssl x509 -req -in aws.csr -CA "$SAM_LOCAL_CACHE/ca.crt" -CAkey "$SAM_LOCAL_CACHE/ca.key" \
		-CAcreateserial -days 2 -extfile aws.ext -out aws.crt
	cat aws.crt aws.key >aws.pem
) 2>/dev/null
relay aws "OPENSSL-LISTEN:443,bind=$BRIDGE_IP,cert=$SAM_LOCAL_DIR/aws.pem,verify=0" "TCP:127.0.0.1:${AWS_ENDPOINT_URL##*:}"
relay postgres "TCP-LISTEN:5432,bind=$BRIDGE_IP" "TCP:127.0.0.1:$TEST_TLS_PG_PORT"
# Redis: a private server, plain: the functions' Redis client trusts only the public roots
# built into it and has no insecure mode, so TLS in transit (rediss://) cannot be stood in for.
need_cmd redis-server
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$SAM_LOCAL_DIR/redis.log" 2>&1 </dev/null &
add_cleanup "_stop_pid $! 'private Redis'"
for _ in $(seq 1 20); do redis_ping 127.0.0.1 "$redis_port" && break || sleep 0.5; done
relay redis "TCP-LISTEN:6379,bind=$BRIDGE_IP" "TCP:127.0.0.1:$redis_port"
# Values for the variables the template declares; SAM ignores the names a function lacks.
python3 -c 'import json, sys; print(json.dumps({"Parameters": dict(a.split("=", 1) for a in sys.argv[1:])}))' \
	"DATABASE_SECRET_ARN=$DATABASE_SECRET_ARN" "DATABASE_HOST=$BRIDGE_IP" DATABASE_PORT=5432 \
	DATABASE_CA_BUNDLE=/var/task/database-ca.pem "JWT_SECRET_ARN=$JWT_SECRET_ARN" \
	"IDEMPOTENCY_TABLE=$IDEMPOTENCY_TABLE" "LOGIN_THROTTLE_TABLE=$LOGIN_THROTTLE_TABLE" \
	"REDIS_URL=redis://$BRIDGE_IP:6379" >"$SAM_LOCAL_DIR/env.json"

closed=http://127.0.0.1:$(free_port)
# sam_invoke LOGICAL_ID EVENT: SAM with no telemetry, its AWS and HTTP(S) calls sent to a closed
# port, under OFFLINE_GID; the containers resolve the AWS names to the bridge, nothing else.
sam_invoke() {
	env SAM_CLI_TELEMETRY=0 AWS_ENDPOINT_URL="$closed" AWS_MAX_ATTEMPTS=1 HTTP_PROXY="$closed" HTTPS_PROXY="$closed" \
		http_proxy="$closed" https_proxy="$closed" NO_PROXY=localhost,127.0.0.1 no_proxy=localhost,127.0.0.1 \
		setpriv --regid "$OFFLINE_GID" --clear-groups -- \
		sam local invoke "$1" --event "$2" --template "$SAM_LOCAL_DIR/template.yaml" \
		--env-vars "$SAM_LOCAL_DIR/env.json" --parameter-overrides Architecture=x86_64 \
		--region "$REGION" --skip-pull-image --container-dns 127.0.0.1 \
		$(printf -- "--add-host %s:$BRIDGE_IP " "${AWS_HOSTS[@]}")
}
logical_id() { echo "$1" | sed -E 's/(^|-)([a-z])/\U\2/g; s/$/Function/'; }
guard_egress

step "Database: sam local invoke MigrateFunction, then the fixture user" "see $SAM_LOCAL_DIR/migrate.log"
echo '{}' >"$SAM_LOCAL_DIR/empty.json"
started=$SECONDS
sam_invoke MigrateFunction "$SAM_LOCAL_DIR/empty.json" >"$SAM_LOCAL_DIR/migrate.out" 2>"$SAM_LOCAL_DIR/migrate.log" || {
	tail_log "$SAM_LOCAL_DIR/migrate.log"
	die "the migrate function failed"
}
say "migrated in $((SECONDS - started))s: $(cat "$SAM_LOCAL_DIR/migrate.out")"
# The fixture user the events are signed for, its password hashed with bcrypt (libcrypt's).
hash=$(python3 -W ignore -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))' "$(fixture password)")
psql -w -X -q -v ON_ERROR_STOP=1 -d "$(url_with_db "$TEST_TLS_PG_ADMIN_URL" favorites)" \
	-c "insert into users (id, email, password_hash) values ('$(fixture user_id)', '$(fixture email)', '$hash')"

step "sam local invoke of each event, status as named" "reproduce one with: $SAM_LOCAL_DIR/invoke.log"
if [ "$#" -gt 0 ]; then events=("$@"); else mapfile -t events < <(find events -mindepth 2 -name '*.json' | sort); fi
failures=0
rm -f "$SAM_LOCAL_DIR"/failed-*.log
for event in "${events[@]}"; do
	fn=$(basename "$(dirname "$event")")
	expected=$(basename "$event" .json)
	expected=${expected##*-}
	started=$SECONDS
	sam_invoke "$(logical_id "$fn")" "$event" >"$SAM_LOCAL_DIR/answer.json" 2>"$SAM_LOCAL_DIR/invoke.log" || true
	# A buffered answer is the proxy response; a streamed one (the list) comes through raw: its
	# prelude (status, headers), eight NUL bytes, the body.
	got=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1], "rb").read().split(b"\0" * 8)[0])["statusCode"])' \
		"$SAM_LOCAL_DIR/answer.json" 2>/dev/null || echo "no answer")
	if [ "$got" = "$expected" ]; then
		say "ok    $event: $got ($((SECONDS - started))s)"
	else
		failures=$((failures + 1))
		say "FAIL  $event: expected $expected, got $got ($((SECONDS - started))s)"
		tail_log "$SAM_LOCAL_DIR/invoke.log" 30
		cp "$SAM_LOCAL_DIR/invoke.log" "$SAM_LOCAL_DIR/failed-$fn-$(basename "$event" .json).log"
	fi
done
iptables -L FAVORITES_SAM_LOCAL -v -x -n >&2
leaks=$(egress_count)
say "packets SAM or a container sent beyond this machine (rejected): $leaks"
[ "$leaks" = 0 ] || die "something tried to leave the machine: see iptables -L FAVORITES_SAM_LOCAL -v"
[ "$failures" = 0 ] || die "$failures of ${#events[@]} events did not answer as named"
say "${#events[@]} events answered as named"
step_done
