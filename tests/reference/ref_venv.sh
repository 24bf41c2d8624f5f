# Sourced by the make_*.sh scripts here. `ref_venv PIN...` sets `venv` to $REF_VENV (created if
# it does not exist yet) or to a throwaway venv removed at exit, and installs the pinned
# packages into it (PYTHON=python3 picks the interpreter that creates it).
ref_venv() {
  if [ -n "${REF_VENV:-}" ]; then
    venv="$REF_VENV"
  else
    ref_venv_tmp="$(mktemp -d)"
    trap 'rm -rf "$ref_venv_tmp"' EXIT
    venv="$ref_venv_tmp/venv"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "creating venv $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv"
  fi
  echo "installing $* into $venv" >&2
  "$venv/bin/python" -m pip install --quiet "$@"
}
