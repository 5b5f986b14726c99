#!/usr/bin/env bash
# CI: the wheel works anywhere. Build it (`python -m build --wheel`), install it into a fresh venv in a temporary
# directory (torch==2.13.0 first, then the wheel), and from an empty directory, with the state directory in that
# temporary directory, run `recplatform up`, `init`, `demo --users 200 --items 100` and `down --purge`.
# Nothing from the checkout is on the path while those run. Any failure stops the script with its log.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d /tmp/recplatform-wheel.XXXXXX)"
STEP="start"
started=$(date +%s)

fail() {
    local rc=$?
    echo "wheel smoke: FAILED at step '$STEP' (exit $rc); last output:" >&2
    tail -n 60 "$WORK/step.log" 2>/dev/null >&2 || true
    exit "$rc"
}
cleanup() {
    if [ -x "$WORK/venv/bin/recplatform" ] && [ -d "$WORK/state" ]; then
        (cd "$WORK/empty" && "$WORK/venv/bin/recplatform" down --purge >/dev/null 2>&1) || true
    fi
    rm -rf "$WORK"
}
trap fail ERR
trap cleanup EXIT

run() {  # run STEP_NAME COMMAND...: output to step.log, shown on failure
    STEP="$1"; shift
    local t0=$(date +%s)
    "$@" >"$WORK/step.log" 2>&1
    echo "wheel smoke: $STEP ok ($(( $(date +%s) - t0 )) s)"
}

# The installed package alone: no checkout on the path, no settings from the caller's environment.
unset PYTHONPATH
for var in $(env | sed -n 's/^\(RECPLATFORM_[A-Z0-9_]*\)=.*/\1/p'); do unset "$var"; done

# Build from a copy of the files git knows (tracked or new, not ignored), so stale build/ or egg-info folders of
# the checkout cannot leak into the wheel and the checkout stays clean.
mkdir "$WORK/src"
(cd "$ROOT" && git ls-files -z -co --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) \
    | tar -xf - -C "$WORK/src"
run "build wheel" "$PYTHON" -m build --wheel --outdir "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/recplatform-*.whl)"
run "fresh venv" "$PYTHON" -m venv "$WORK/venv"
run "pip install torch==2.13.0" "$WORK/venv/bin/python" -m pip install --quiet torch==2.13.0
run "pip install wheel" "$WORK/venv/bin/python" -m pip install --quiet "$WHEEL"

mkdir "$WORK/empty"
cd "$WORK/empty"
export RECPLATFORM_STATE_DIR="$WORK/state"
run "package comes from the venv" "$WORK/venv/bin/python" -c "
import recplatform, recplatform.db as db, recplatform.config as c, sys
assert recplatform.__file__.startswith(sys.prefix), recplatform.__file__
assert (db.MIGRATIONS_DIR / 'alembic.ini').is_file() and (db.MIGRATIONS_DIR / 'script.py.mako').is_file()
assert len(db.sql_function_files()) >= 20 and (c.FEATURE_REPO / 'feature_store.yaml').is_file()"
RP="$WORK/venv/bin/recplatform"
run "recplatform up" "$RP" up
run "recplatform init" "$RP" init
run "recplatform demo --users 200 --items 100" "$RP" demo --users 200 --items 100
run "recplatform down --purge" "$RP" down --purge
[ ! -e "$WORK/state" ] || { STEP="purge"; echo "state directory still there" >"$WORK/step.log"; false; }
[ -z "$(ls -A "$WORK/empty")" ] || { STEP="empty directory"; ls -A "$WORK/empty" >"$WORK/step.log"; false; }
echo "wheel smoke: passed in $(( $(date +%s) - started )) s"
