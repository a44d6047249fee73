#!/usr/bin/env bash
# Proves the package a user installs: packs it (prepack builds and checks the prebuilt policy),
# checks that it carries only what runs, installs the tarball into an empty prefix, and runs
# `portcullis check`, `eval` and a short `proxy` session from there on a PATH without `go` and
# `opa`, with an empty cache. The proxy session lives in a network namespace made here: the
# upstream listens on a documentation address inside it, nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "check-package: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# The installed package must run where neither exists; the PATH below keeps only these two folders.
for dir in /usr/bin /bin; do
  for tool in go opa; do
    [ ! -e "$dir/$tool" ] || fail "$dir/$tool exists: this check needs a PATH without go and opa"
  done
done

work="$(mktemp -d /tmp/portcullis-package-XXXXXX)"
ns="pkgcheck-$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  ip netns delete "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

npm_cache="$(npm config get cache)"
npm pack --silent --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log" >&2; fail "npm pack"; }
tarball="$(ls "$work"/portcullis-*.tgz)"

# Only what runs: the CLI, the built-in Rego and its compiled policy, the addon's optional build.
tar -tzf "$tarball" | sed 's|^package/||' | sort >"$work/contents"
unexpected="$(grep -Ev '^(package\.json|README\.md|LICENSE|dist/cli/[a-z-]+\.(js|cjs)|dist/util/[a-z-]+\.js|dist/wasm/[0-9a-f]{32}\.wasm|policies/portcullis/[a-z_]+\.rego|src/identity/native/sock-diag\.c|scripts/build-native\.sh)$' "$work/contents" || true)"
[ -z "$unexpected" ] || fail "the package carries files that do not run: $unexpected"
! grep -q '_test\.rego$' "$work/contents" || fail "the package carries Rego tests"
grep -Eq '^dist/wasm/[0-9a-f]{32}\.wasm$' "$work/contents" || fail "no prebuilt policy in the package"
say "$(wc -l <"$work/contents") files, $(du -k "$tarball" | cut -f1) KiB packed"

# A user's machine: an empty prefix and home, no go, no opa.
prefix="$work/prefix"
home="$work/home"
mkdir -p "$prefix" "$home"
# (The rest of the environment stays: the machine's CA settings reach the registry.)
user_env=(env -u PORTCULLIS_OPA -u XDG_CACHE_HOME "HOME=$home" "PATH=$prefix/bin:/usr/bin:/bin" "npm_config_cache=$npm_cache")
timeout 600 "${user_env[@]}" npm install --global --prefix "$prefix" --prefer-offline --no-audit --no-fund --loglevel=error "$tarball" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log" >&2; fail "npm install of the tarball"; }
for tool in go opa; do
  ! "${user_env[@]}" bash -c "command -v $tool" >/dev/null || fail "$tool is on the user's PATH"
done
portcullis=("${user_env[@]}" "$prefix/bin/portcullis")

curl_path="$(readlink -f "$(command -v curl)")"
policy="$work/policy.yaml"
cat >"$policy" <<YAML
version: 1
network_policies:
  upstream:
    endpoints:
      - host: 203.0.113.10
        port: 8080
        allowed_ips: ["203.0.113.0/24"]
    binaries:
      - path: $curl_path
YAML

"${portcullis[@]}" check --policy "$policy" || fail "portcullis check"
allowed="$("${portcullis[@]}" eval --policy "$policy" --host 203.0.113.10 --port 8080 --address 203.0.113.10 --binary "$curl_path")"
denied="$("${portcullis[@]}" eval --policy "$policy" --host 203.0.113.10 --port 8080 --address 203.0.113.10 --binary /usr/bin/wget)"
[[ "$allowed" == *'"allow":true'* ]] || fail "eval of an allowed request: $allowed"
[[ "$denied" == *'"allow":false'* ]] || fail "eval of a denied request: $denied"

# The proxy: an upstream on 203.0.113.10:8080 in a namespace of our own; one allowed CONNECT.
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" addr add 203.0.113.10/32 dev lo
mkdir -p "$work/www"
echo "hello through the package" >"$work/www/hello.txt"
ip netns exec "$ns" python3 -m http.server --bind 203.0.113.10 --directory "$work/www" 8080 >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$ns" "${portcullis[@]}" proxy --policy "$policy" --listen 127.0.0.1:0 --audit "$work/audit.jsonl" 2>"$work/proxy.log" &
proxy_pid=$!
pids+=("$proxy_pid")
port=""
for _ in $(seq 1 200); do
  port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/proxy.log" | head -1)"
  [ -n "$port" ] && break
  kill -0 "$proxy_pid" 2>/dev/null || { cat "$work/proxy.log" >&2; fail "the proxy exited at start"; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/proxy.log" >&2; fail "the proxy did not start listening within 20 s"; }
for _ in $(seq 1 100); do
  ip netns exec "$ns" bash -c 'exec 3<>/dev/tcp/203.0.113.10/8080' 2>/dev/null && break
  sleep 0.1
done
body="$(ip netns exec "$ns" curl -sS --max-time 20 --proxytunnel -x "http://127.0.0.1:$port" http://203.0.113.10:8080/hello.txt)" \
  || { cat "$work/proxy.log" >&2; fail "curl through the proxy"; }
[ "$body" = "hello through the package" ] || fail "unexpected body through the proxy: $body"
kill -TERM "$proxy_pid"
status=0
wait "$proxy_pid" || status=$?
[ "$status" -eq 0 ] || fail "the proxy exited $status on SIGTERM"
grep -q '"kind":"connect".*"decision":"allow"' "$work/audit.jsonl" || fail "no allowed connect in the audit: $(cat "$work/audit.jsonl")"

# Nothing was compiled: the decisions came from the prebuilt policy.
[ ! -e "$home/.cache/portcullis/wasm" ] || fail "the installed package compiled the policy (found $home/.cache/portcullis/wasm)"
say "ok: installed without go or opa; check, eval and one CONNECT through the proxy work"
