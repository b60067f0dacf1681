#!/usr/bin/env bash
# Runs the test suite once per Node.js version: the machine's `node`, then Node 24 (LTS).
#
#   STEWARD_TEST_NODES="machine 24"   the default
#   STEWARD_TEST_NODES=machine        only the machine's Node (quick local runs)
#   STEWARD_TEST_NODES="machine 22 24" any Node major: fetched from the npm registry (node-<os>-<arch>@MAJOR)
#   STEWARD_TEST_FILES="test/parse.test.ts test/smoke.test.ts"   some test files instead of test/*.test.ts
#
# A Node other than the machine's is unpacked once into .cache/node<MAJOR>/ (git-ignored) and reused.
# better-sqlite3 is a native addon built for one Node ABI: each ABI's better_sqlite3.node is kept in
# .cache/better-sqlite3/, built from source with node-gyp the first time (about a minute; the headers
# come with the npm package, so node-gyp downloads nothing), copied into
# node_modules/better-sqlite3/build/Release/ before its run, and the machine Node's copy is put back
# afterwards, also when a run fails or is interrupted. The test runner runs under the chosen Node, and the
# tests spawn their nodes with process.execPath, so the whole fleet runs that Node. While another Node's
# run goes on, this checkout's better-sqlite3 is that Node's build: run nothing else from it meanwhile.
#
# Exits non-zero when any run fails; every run still goes ahead, and a line per run says how it went.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache="$root/.cache"
addon_dir="$root/node_modules/better-sqlite3/build/Release"
addon="$addon_dir/better_sqlite3.node"
say() { printf 'test: %s\n' "$*"; }
die() { printf 'test: %s\n' "$*" >&2; exit 1; }

machine_node=$(command -v node) || die "node is not on PATH"
sqlite_version=$(node -p 'require("./node_modules/better-sqlite3/package.json").version') ||
  die "node_modules/better-sqlite3 is missing: run ./setup.sh"

abi_of() { "$1" -p 'process.versions.modules'; }
# The cached addon for a Node binary: one file per better-sqlite3 version and Node ABI.
addon_cache_of() { printf '%s/better-sqlite3/%s-abi%s/better_sqlite3.node' "$cache" "$sqlite_version" "$(abi_of "$1")"; }
loads_sqlite() { "$1" -e 'new (require("better-sqlite3"))(":memory:").close()' 2>/dev/null; }

# The machine Node's addon, as npm ci built it: saved once, and put back after every run.
machine_addon=$(addon_cache_of "$machine_node")
if [ ! -f "$machine_addon" ]; then
  if ! loads_sqlite "$machine_node"; then
    say "better-sqlite3 does not load in the machine's Node: rebuilding it"
    npm rebuild better-sqlite3 >/dev/null || die "npm rebuild better-sqlite3 failed"
  fi
  mkdir -p "$(dirname "$machine_addon")"
  cp "$addon" "$machine_addon.tmp" && mv "$machine_addon.tmp" "$machine_addon"
fi
# A new file renamed into place: a process that has the old one loaded keeps its copy.
install_addon() { cmp -s "$1" "$addon" || { cp "$1" "$addon.tmp" && mv "$addon.tmp" "$addon"; }; }
restore_addon() { install_addon "$machine_addon"; }
trap restore_addon EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Unpacks the official build of Node MAJOR (an npm package) into .cache/node<MAJOR>/ once; prints its binary.
fetch_node() {
  local major=$1 dir="$cache/node$1"
  if [ ! -x "$dir/package/bin/node" ]; then
    local pkg
    pkg="node-$(node -p 'process.platform')-$(node -p 'process.arch')@$major"
    say "fetching Node $major from the npm registry ($pkg), once" >&2
    rm -rf "$dir" && mkdir -p "$dir" || return 1
    local tgz
    tgz=$(cd "$dir" && npm pack --silent "$pkg") || return 1
    tar -xzf "$dir/$tgz" -C "$dir" && rm -f "$dir/$tgz" || return 1
  fi
  printf '%s\n' "$dir/package/bin/node"
}

# Builds better-sqlite3 for a Node binary from its sources in node_modules, in a scratch copy; caches it.
build_addon() {
  local node_bin=$1 target=$2 scratch="$cache/build-better-sqlite3"
  local node_gyp
  node_gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
  [ -f "$node_gyp" ] || { say "node-gyp not found next to npm ($node_gyp)" >&2; return 1; }
  say "building better-sqlite3 $sqlite_version for Node $("$node_bin" --version) (about a minute, once)" >&2
  rm -rf "$scratch" && mkdir -p "$scratch" && cp -r "$root/node_modules/better-sqlite3" "$scratch/" || return 1
  rm -rf "$scratch/better-sqlite3/build"
  # node-gyp lets npm's npm_config_* variables override its arguments (under `npm test`, npm_config_nodedir
  # would point it at the machine Node's headers): it runs without them.
  local npm_vars=()
  for name in $(compgen -e | grep -i '^npm_config_'); do npm_vars+=(-u "$name"); done
  (cd "$scratch/better-sqlite3" &&
    env "${npm_vars[@]}" "$node_bin" "$node_gyp" rebuild --release --jobs=max \
      --nodedir="$(dirname "$(dirname "$node_bin")")" >build.log 2>&1) || {
    tail -20 "$scratch/better-sqlite3/build.log" >&2
    return 1
  }
  mkdir -p "$(dirname "$target")"
  local fresh="${target%.node}.new.node"
  cp "$scratch/better-sqlite3/build/Release/better_sqlite3.node" "$fresh" || return 1
  # Cached only once it loads in the Node it was built for.
  "$node_bin" -e 'new (require(process.argv[1]))(":memory:", { nativeBinding: process.argv[2] }).close()' \
    "$root/node_modules/better-sqlite3" "$fresh" || {
    say "the better-sqlite3 built for $("$node_bin" --version) does not load in it" >&2
    return 1
  }
  mv "$fresh" "$target"
  rm -rf "$scratch"
}

# Tests passed and failed over every run, for the closing line.
passed_total=0
failed_total=0
# The last "pass N" / "fail N" of node:test's summary (TAP "# pass N", or the spec reporter's "ℹ pass N").
summary_count() { grep -aE "^(# |ℹ )$1 [0-9]+\$" "$2" | tail -n 1 | grep -oE '[0-9]+$' || echo 0; }

run_suite() {
  local node_bin=$1 label=$2 started status out
  say "== $label: $("$node_bin" --version) ($node_bin)"
  started=$(date +%s)
  out=$(mktemp)
  # Unquoted on purpose: the shell expands the glob, node --test takes the files.
  # shellcheck disable=SC2086
  PATH="$(dirname "$node_bin"):$PATH" "$node_bin" --import tsx --test --test-concurrency=1 ${STEWARD_TEST_FILES:-test/*.test.ts} |
    tee "$out"
  status=${PIPESTATUS[0]}
  passed_total=$((passed_total + $(summary_count pass "$out")))
  failed_total=$((failed_total + $(summary_count fail "$out")))
  rm -f "$out"
  say "== $label: $("$node_bin" --version) $([ $status -eq 0 ] && echo passed || echo "FAILED (exit $status)") in $(($(date +%s) - started))s"
  return $status
}

failed=()
for wanted in ${STEWARD_TEST_NODES:-machine 24}; do
  wanted=${wanted//,/}
  [ -n "$wanted" ] || continue
  if [ "$wanted" = machine ]; then
    restore_addon
    run_suite "$machine_node" "machine Node" || failed+=("machine Node")
    continue
  fi
  [[ "$wanted" =~ ^[0-9]+$ ]] || die "STEWARD_TEST_NODES: \"$wanted\" is neither \"machine\" nor a Node major version"
  node_bin=$(fetch_node "$wanted") || { say "cannot fetch Node $wanted"; failed+=("Node $wanted"); continue; }
  target=$(addon_cache_of "$node_bin")
  if [ ! -f "$target" ]; then
    build_addon "$node_bin" "$target" || { say "cannot build better-sqlite3 for Node $wanted"; failed+=("Node $wanted"); continue; }
  fi
  install_addon "$target" || { failed+=("Node $wanted"); continue; }
  run_suite "$node_bin" "Node $wanted" || failed+=("Node $wanted")
  restore_addon
done

if [ ${#failed[@]} -gt 0 ]; then
  say "failed: ${failed[*]}"
  echo "$passed_total passed, $failed_total failed"
  exit 1
fi
say "every run passed"
echo "$passed_total passed, $failed_total failed"
