#!/usr/bin/env bash
# Set-up and the two everyday jobs, on a fresh machine or a warm one.
#   bash infra/dev.sh demo        set up, then run the end-to-end demo on a local broker
#   bash infra/dev.sh test [ARGS] set up, then run the whole test suite (ARGS go to pytest)
#   bash infra/dev.sh setup       only set up
# The virtualenv and Kafka's jars live outside the clone (FMS_HOME, default ~/.cache/feature-memory)
# and are reused between runs; dependencies are reinstalled only when pyproject.toml changes.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FMS_HOME="${FMS_HOME:-$HOME/.cache/feature-memory}"
venv="${FMS_VENV:-$FMS_HOME/venv}"
# audio (torch, transformers): the extraction tests run in CI too; see README "Audio" for its cost.
extras="${FMS_EXTRAS:-test,bench,audio}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

setup() {
  mkdir -p "$FMS_HOME"
  if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtualenv $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip setuptools wheel
  fi
  local stamp="$venv/.fms-deps" want
  want="$(cat "$repo/pyproject.toml" | sha256sum | cut -c1-16) $extras"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing dependencies ($extras) into $venv" >&2
    "$venv/bin/pip" install -q --upgrade setuptools wheel
    if ! "$venv/bin/pip" install -q -e "$repo[$extras]" > "$FMS_HOME/pip-install.log" 2>&1; then
      cat "$FMS_HOME/pip-install.log" >&2; exit 1
    fi
    echo "$want" > "$stamp"
  fi
  # The clone may have moved (CI clones afresh): point the editable install at this one.
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$repo" >/dev/null 2>&1 \
    || "$venv/bin/pip" install -q --no-deps -e "$repo"
  bash "$repo/infra/kafka/broker.sh" fetch >/dev/null
}

# The Prometheus-scrape test needs a real server: Debian's package, where this machine can install it.
ensure_prometheus() {
  command -v prometheus >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's prometheus package (for the scrape test)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
      > "$FMS_HOME/apt-prometheus.log" 2>&1 || echo "could not install prometheus; see $FMS_HOME/apt-prometheus.log" >&2
  else
    echo "prometheus not installed and no root apt-get: its scrape test will be skipped" >&2
  fi
}

case "${1:-}" in
  setup) setup ;;
  demo) shift; setup; exec "$venv/bin/fms" demo "$@" ;;
  test) shift; setup; ensure_prometheus; cd "$repo"; exec "$venv/bin/python" -m pytest "$@" ;;
  *) echo "usage: bash infra/dev.sh demo|test|setup" >&2; exit 2 ;;
esac
