#!/usr/bin/env bash
# Runs the whole test suite from a fresh machine: installs the system packages the tests use
# (real Prometheus, promtool, amtool, yaegi, Go tools, npm type-checker), a virtualenv with the
# package and its test extras, then pytest. Idempotent: a second run only re-runs the tests.
#
#   bash scripts/test.sh [PYTEST ARGS]       pinned: .venv with the exact versions of constraints.txt
#   bash scripts/test.sh --latest [ARGS]     newest releases allowed by pyproject, in .venv-latest
#   bash scripts/test.sh --latest --freeze   ... and, if the suite passes, rewrite constraints.txt
set -euo pipefail
cd "$(dirname "$0")/.."

mode=pinned freeze=0
while [ $# -gt 0 ]; do
  case "$1" in
    --latest) mode=latest; shift ;;
    --freeze) freeze=1; shift ;;
    *) break ;;
  esac
done
if [ "$freeze" = 1 ] && [ "$mode" != latest ]; then
  echo "--freeze records the versions of a --latest run: use --latest --freeze" >&2
  exit 2
fi

need_apt=()
for pair in prometheus:prometheus promtool:prometheus amtool:prometheus-alertmanager \
            yaegi:yaegi gofmt:golang-go go:golang-go npm:npm xz:xz-utils; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# (xz unpacks the real Collector of ../shared/tools/otelcol on first use)
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
if [ "$mode" = latest ]; then venv=.venv-latest; else venv=.venv; fi
[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip >/dev/null
if [ "$mode" = latest ]; then
  # eager: every dependency, not only the direct ones, moves to its newest release
  "$venv/bin/pip" install -q --upgrade --upgrade-strategy eager -e '.[test,bench]'
else
  "$venv/bin/pip" install -q -c constraints.txt -e '.[test,bench]'
fi

if [ -f dashboards/typecheck/package.json ] && [ ! -d dashboards/typecheck/node_modules ]; then
  (cd dashboards/typecheck && npm install --no-audit --no-fund --silent)
fi

set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: check the arguments (a test run that tests nothing is a failure)" >&2
  exit 5
fi
if [ "$rc" = 0 ] && [ "$freeze" = 1 ]; then
  { sed -n '1,2p' constraints.txt
    "$venv/bin/pip" freeze --exclude-editable | grep -v -i '^kit-otel' | LC_ALL=C sort -f
  } > constraints.txt.new && mv constraints.txt.new constraints.txt
  echo "constraints.txt now pins the versions this run passed with; review and commit it" >&2
fi
exit "$rc"
