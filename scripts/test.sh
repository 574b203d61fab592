#!/usr/bin/env bash
# Runs the whole test suite from a fresh machine: installs the system packages the tests use
# (real Prometheus, promtool, amtool, yaegi, Go tools, npm type-checker), a virtualenv with the
# package and its test extras, then pytest. Idempotent: a second run only re-runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in prometheus:prometheus promtool:prometheus amtool:prometheus-alertmanager \
            yaegi:yaegi gofmt:golang-go go:golang-go npm:npm; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# the Yaegi library itself: the bridge tests embed it the way KIT does
[ -d /usr/share/gocode/src/github.com/traefik/yaegi ] || need_apt+=(golang-github-traefik-yaegi-dev)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "missing system packages (install them as root): ${need_apt[*]}" >&2
      echo "tests that need them will be reported as skipped" >&2
    fi
  fi
  if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      $(printf '%s\n' "${need_apt[@]}" | sort -u)
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'

if [ -f dashboards/typecheck/package.json ] && [ ! -d dashboards/typecheck/node_modules ]; then
  (cd dashboards/typecheck && npm install --no-audit --no-fund --silent)
fi

exec .venv/bin/python -m pytest "$@"
