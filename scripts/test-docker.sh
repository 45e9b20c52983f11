#!/usr/bin/env bash
# Docker smoke test (npm run test:docker): builds the production image, runs it as an
# operator would, and checks upload -> execute -> metrics, persistence across a restart
# (named volume), the non-root user, the healthcheck and a graceful `docker stop`.
#
# Needs: a Docker engine, curl, and `npm ci` done here (the test plugin is compiled from
# WAT with the `wabt` devDependency). Containers use host networking (the engine here has
# no bridge), so the service binds 127.0.0.1 on a free port of this machine.
#
# Then the shared registry: two containers of the image with REGISTRY_URL on one PostgreSQL
# (host network): an upload on one is served by the other, a delete stops on both. The
# database is TEST_DATABASE_URL when set (e.g. .ci/run's cluster), else a throw-away
# cluster started here with scripts/pg-test-cluster.sh (needs Debian's postgresql).
#
# Environment: TEST_DOCKER_PORT (default: a free port), TEST_DOCKER_IMAGE
# (default wasm-plugin-host:test), TEST_DOCKER_KEEP_IMAGE=0 to remove the image afterwards,
# TEST_DATABASE_URL, TEST_DOCKER_PG_PORT (default 54339, for the cluster started here).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${TEST_DOCKER_IMAGE:-wasm-plugin-host:test}
name=wasm-plugin-host-test-$$
volume=wasm-plugin-host-test-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/test-docker.XXXXXX")
started=$(date +%s)
ok=0

step () { printf '\n== %s\n' "$*"; }
fail () { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

pg_dir=
cleanup () {
  local rc=$?
  for c in "$name-a" "$name-b"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  if [ -n "$pg_dir" ]; then scripts/pg-test-cluster.sh stop "$pg_dir" || true; fi
  if [ "$ok" != 1 ] && docker container inspect "$name" >/dev/null 2>&1; then
    printf '\n== container logs (last 50 lines)\n' >&2
    docker logs --tail 50 "$name" >&2 2>&1 || true
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker volume rm "$volume" >/dev/null 2>&1 || true
  if [ "${TEST_DOCKER_KEEP_IMAGE:-1}" = 0 ]; then docker rmi "$image" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
  [ "$rc" = 0 ] || printf '\ntest-docker: FAILED (exit %s)\n' "$rc" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v docker >/dev/null || fail 'docker is not installed'
command -v curl >/dev/null || fail 'curl is not installed'
docker info >/dev/null 2>&1 || fail 'no Docker engine answers (is dockerd running?)'
node -e "require.resolve('wabt')" 2>/dev/null || fail "the wabt devDependency is missing: run 'npm ci' first"

port=${TEST_DOCKER_PORT:-$(node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close() })")}
base=http://127.0.0.1:$port

# GET/POST helpers: body to $work/body, status code on stdout; never fail on HTTP errors.
http () { curl -sS -o "$work/body" -w '%{http_code}' --max-time 30 "$@"; }
expect_status () { # expected, description, curl args...
  local want=$1 what=$2 got; shift 2
  got=$(http "$@") || fail "$what: curl failed"
  [ "$got" = "$want" ] || fail "$what: HTTP $got, expected $want: $(head -c 500 "$work/body")"
}

wait_ready () { # waits for /readyz; fails early if the container stopped
  for _ in $(seq 1 120); do
    if [ "$(http "$base/readyz" 2>/dev/null)" = 200 ]; then return 0; fi
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || fail "the container exited (code $(docker inspect -f '{{.State.ExitCode}}' "$name"))"
    sleep 0.5
  done
  fail "$base/readyz did not answer 200 within 60 s"
}

execute_echo () { # the echo plugin returns its input unchanged
  expect_status 200 'execute echo' -H 'content-type: application/json' -d '{"hello":"docker"}' -D "$work/headers" "$base/plugins/echo/execute"
  [ "$(cat "$work/body")" = '{"hello":"docker"}' ] || fail "execute echo returned $(head -c 500 "$work/body")"
  grep -qi '^x-plugin-version:' "$work/headers" || fail 'execute: no x-plugin-version header'
  grep -qi '^server-timing: plugin;dur=' "$work/headers" || fail 'execute: no server-timing header'
}

# A graceful stop: SIGTERM, at most 10 s before docker falls back to SIGKILL (exit 137).
timed () { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null || return 1; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }

step "compile the test plugin (WAT -> wasm with wabt)"
cat >"$work/echo.wat" <<'EOF'
(module (memory (export "memory") 1) (global $h (mut i32) (i32.const 1024))
  (func (export "alloc") (param $n i32) (result i32) (local $p i32) (local.set $p (global.get $h)) (global.set $h (i32.add (local.get $p) (local.get $n))) (local.get $p))
  (func (export "execute") (param i32 i32) (result i32 i32) (local.get 0) (local.get 1)))
EOF
node -e "
  const fs = require('node:fs')
  require('wabt')().then((wabt) => {
    const mod = wabt.parseWat('echo.wat', fs.readFileSync(process.argv[1], 'utf8'), { multi_value: true })
    fs.writeFileSync(process.argv[2], mod.toBinary({}).buffer)
  })
" "$work/echo.wat" "$work/echo.wasm"
echo "echo.wasm: $(wc -c <"$work/echo.wasm") bytes"

step "build $image"
build_t0=$(date +%s)
if ! docker build --network host -t "$image" . >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  fail 'docker build failed'
fi
grep -E '^Step [0-9]+/[0-9]+ : (FROM|RUN)|^Successfully' "$work/build.log" || true
build_s=$(( $(date +%s) - build_t0 ))
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "image: $image, $(( size / 1000000 )) MB, built in ${build_s} s"
env_list=$(docker image inspect -f '{{join .Config.Env " "}}' "$image")
for kv in HOST=0.0.0.0 PORT=8080 DATA_DIR=/data; do
  [[ " $env_list " == *" $kv "* ]] || fail "image ENV lacks $kv"
done
[ "$(docker image inspect -f '{{.Config.User}}' "$image")" = node ] || fail 'image USER is not node'

step "run on $base (host network, volume $volume at /data)"
docker volume create "$volume" >/dev/null
# HOST=127.0.0.1: with host networking, the image's 0.0.0.0 would expose this unauthenticated
# test instance on every interface of the machine. The healthcheck runs every 2 s here.
docker run -d --name "$name" --network host \
  -e HOST=127.0.0.1 -e PORT="$port" -e WORKERS=2 -e LOG_LEVEL=info \
  -v "$volume:/data" --health-interval 2s --health-start-period 30s \
  "$image" >/dev/null
t0=$(date +%s%N)
wait_ready
echo "ready after $(( ($(date +%s%N) - t0) / 1000000 )) ms"

step "upload, execute, metrics"
expect_status 201 'upload echo' -F "module=@$work/echo.wasm" -F 'manifest={"name":"echo"}' "$base/plugins"
echo "uploaded: $(head -c 300 "$work/body")"
execute_echo
echo "executed: $(cat "$work/body")"
expect_status 200 'metrics' "$base/metrics"
grep -q '^plugin_executions_total{' "$work/body" || fail '/metrics has no plugin_executions_total sample'
metric=$(grep '^plugin_executions_total{' "$work/body" | grep 'plugin="echo"' | grep 'outcome="ok"' || true)
[ -n "$metric" ] || fail "/metrics: no plugin_executions_total sample for echo/ok: $(grep plugin_executions_total "$work/body")"
echo "metrics: $metric"
expect_status 200 'openapi' "$base/openapi.yaml"

step "process: user, command line, healthcheck"
uid=$(docker exec "$name" id -u)
[ "$uid" = 1000 ] || fail "the service runs as uid $uid, expected 1000"
data_owner=$(docker exec "$name" stat -c %u /data)
[ "$data_owner" = 1000 ] || fail "/data is owned by uid $data_owner, expected 1000"
cmdline=$(docker exec "$name" sh -c 'tr "\0" " " </proc/1/cmdline') && cmdline=${cmdline% }
expected="node --no-liftoff --max-semi-space-size=16 dist/main.js"
[[ "$cmdline" == "$expected"* ]] || fail "PID 1 is '$cmdline', expected $expected"
echo "uid $uid, /data owned by $data_owner, PID 1: $cmdline"
for _ in $(seq 1 30); do
  health=$(docker inspect -f '{{.State.Health.Status}}' "$name")
  [ "$health" = starting ] || break
  sleep 1
done
[ "$health" = healthy ] || fail "healthcheck status is '$health': $(docker inspect -f '{{json .State.Health}}' "$name")"
echo "healthcheck: $health"

step "restart: the plugin persists in the volume"
restart_ms=$(timed docker restart "$name")
wait_ready
expect_status 200 'list plugins' "$base/plugins"
grep -q '"name":"echo"' "$work/body" || fail "echo is not listed after the restart: $(head -c 500 "$work/body")"
execute_echo
echo "restart took ${restart_ms} ms; echo still listed and executes: $(cat "$work/body")"

step "graceful stop"
stop_ms=$(timed docker stop -t 10 "$name")
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
case "$exit_code" in
  0) how='exit 0 (SIGTERM handled, clean shutdown)' ;;
  143) how='exit 143 (terminated by SIGTERM)' ;;
  *) fail "docker stop: exit code $exit_code after ${stop_ms} ms (137 = SIGKILL after the 10 s grace period)" ;;
esac
[ "$stop_ms" -lt 5000 ] || fail "docker stop took ${stop_ms} ms"
shutdown_log=$(docker logs "$name" 2>&1 | grep -c '"msg":"shutting down"' || true)
[ "$shutdown_log" = 2 ] || fail "expected 2 'shutting down' log lines (restart + stop), found $shutdown_log"
echo "stopped in ${stop_ms} ms: $how"

step "shared registry: two containers, one PostgreSQL (--network host)"
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  pg_dir=$(mktemp -d /tmp/test-docker-pg.XXXXXX)
  eval "$(scripts/pg-test-cluster.sh start "$pg_dir" "${TEST_DOCKER_PG_PORT:-54339}")"
fi
port_a=$(node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close() })")
port_b=$(node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close() })")
for r in a b; do
  p=$port_a; [ "$r" = b ] && p=$port_b
  docker run -d --name "$name-$r" --network host -e HOST=127.0.0.1 -e PORT="$p" -e WORKERS=1 \
    -e REGISTRY_URL="$TEST_DATABASE_URL" --read-only --tmpfs /data:uid=1000,gid=1000 --tmpfs /tmp "$image" >/dev/null
done
for p in "$port_a" "$port_b"; do
  for _ in $(seq 1 120); do [ "$(http "http://127.0.0.1:$p/readyz" 2>/dev/null)" = 200 ] && break; sleep 0.5; done
  [ "$(http "http://127.0.0.1:$p/readyz")" = 200 ] || fail "replica on $p not ready: $(docker logs --tail 20 "$name-a" 2>&1)"
done
expect_status 201 'upload on replica a' -F "module=@$work/echo.wasm" -F 'manifest={"name":"shared-echo"}' "http://127.0.0.1:$port_a/plugins"
for _ in $(seq 1 50); do [ "$(http "http://127.0.0.1:$port_b/plugins/shared-echo")" = 200 ] && break; sleep 0.1; done
expect_status 200 'execute on replica b' -H 'content-type: application/json' -d '{"via":"b"}' "http://127.0.0.1:$port_b/plugins/shared-echo/execute"
[ "$(cat "$work/body")" = '{"via":"b"}' ] || fail "replica b returned $(head -c 300 "$work/body")"
expect_status 204 'delete on replica b' -X DELETE "http://127.0.0.1:$port_b/plugins/shared-echo"
for _ in $(seq 1 50); do [ "$(http "http://127.0.0.1:$port_a/plugins/shared-echo")" = 404 ] && break; sleep 0.1; done
expect_status 404 'deleted on replica a too' "http://127.0.0.1:$port_a/plugins/shared-echo"
grep -q '^registry_connected 1' <(curl -s "http://127.0.0.1:$port_a/metrics") || fail 'registry_connected is not 1'
echo "two replicas on $port_a and $port_b (read-only root, /data on tmpfs): upload on a served by b, delete on b gone on a"

ok=1
cat <<EOF

== summary: PASS in $(( $(date +%s) - started )) s
image        $image, $(( size / 1000000 )) MB (build ${build_s} s)
ready        /readyz 200; healthcheck $health
plugin       echo uploaded (201) and executed (200, body echoed)
metrics      $metric
persistence  after docker restart (${restart_ms} ms): listed and executes
user         uid $uid; /data owned by uid $data_owner
command      $cmdline
stop         ${stop_ms} ms, $how
replicas     two containers on one PostgreSQL: upload, execute and delete propagate
EOF
