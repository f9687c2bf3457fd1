# Sourced by the scripts beside it: makes (once) and refreshes (when pyproject.toml changes) a virtualenv
# with this package installed in editable mode, plus the dependency groups named in QSESSIONS_GROUPS.
#   QSESSIONS_PYTHON   the interpreter to build it with (default: python3)
#   QSESSIONS_DJANGO   a Django series to pin, e.g. 6.1 (default: the newest release for that Python)
#   QSESSIONS_VENV     where it lives (default: .venv, or .venv-django<series> when a series is pinned)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${QSESSIONS_PYTHON:-python3}
django=${QSESSIONS_DJANGO:-}
venv=${QSESSIONS_VENV:-.venv${django:+-django$django}}
groups=${QSESSIONS_GROUPS:-}

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.qsessions-installed"
want="$(cat pyproject.toml) groups=$groups django=$django"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # Dependency groups need pip 25.1 or newer.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
  args=(-e .)
  for group in $groups; do args+=(--group "$group"); done
  [ -n "$django" ] && args+=("django==$django.*")
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
  printf '%s' "$want" > "$stamp"
fi
