#!/usr/bin/env bash
# What crontab runs: one tick of the pipeline, appended to logs/fullprocess.log. Exits with the
# tick's status (0 also for "no new data"). The tick itself takes the pipeline lock (the project's
# .pipeline.lock, and on PostgreSQL an advisory lock that other hosts see too): a tick started
# while another one runs logs one line and exits 0.
set -euo pipefail

project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$project_dir"
mkdir -p logs
log="$project_dir/logs/fullprocess.log"

# The project's environment: an activated conda env, then .venv, then whatever python3 is here.
if [ -n "${CONDA_PREFIX:-}" ] && [ -x "$CONDA_PREFIX/bin/python" ]; then
    python="$CONDA_PREFIX/bin/python"
elif [ -x "$project_dir/.venv/bin/python" ]; then
    python="$project_dir/.venv/bin/python"
else
    python="$(command -v python3)"
fi

status=0
{
    echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) tick starts"
    "$python" "$project_dir/fullprocess.py" "$@" || status=$?
    echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) tick ends with exit code $status"
} >>"$log" 2>&1
exit "$status"
