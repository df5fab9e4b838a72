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
