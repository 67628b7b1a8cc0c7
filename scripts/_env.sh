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
