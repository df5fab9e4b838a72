# Shared by scripts/*: create or refresh the project's virtualenv in .venv.
# The venv is rebuilt when pyproject.toml or constraints.txt change (a stamp holds their hash).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AIGW_VENV:-$ROOT/.venv}"

ensure_venv() {
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
    return 1
  fi
  local want
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/python" && -f "$VENV/.aigw-stamp" && "$(cat "$VENV/.aigw-stamp")" == "$want" ]]; then
    return 0
  fi
  echo "==> preparing the virtualenv in $VENV (first run takes a minute)" >&2
  [[ -x "$VENV/bin/python" ]] || "$python" -m venv "$VENV"
  local log="$VENV/install.log"
  if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
         "$VENV/bin/python" -m pip install --disable-pip-version-check \
           -c "$ROOT/constraints.txt" -e "$ROOT[test]"; } > "$log" 2>&1; then
    tail -40 "$log" >&2
    echo "installing dependencies failed; full log: $log" >&2
    return 1
  fi
  echo "$want" > "$VENV/.aigw-stamp"
}

# redis-server (Debian's package) for the shared-state tests and for `scripts/run` with a
# config that uses Redis. Installed with apt when missing and run as root; otherwise the
# command to run is printed.
ensure_redis_server() {
  command -v redis-server >/dev/null && return 0
  [[ -x /usr/bin/redis-server ]] && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "==> installing redis-server (Debian package)" >&2
    if ! { apt-get install -y -qq --no-install-recommends redis-server ||
           { apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server; }; } >/dev/null 2>&1; then
      echo "installing redis-server failed" >&2
      return 1
    fi
    return 0
  fi
  echo "redis-server is needed: sudo apt-get install redis-server (or brew install redis)" >&2
  return 1
}
