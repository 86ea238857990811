#!/bin/sh
# Run one process of the Procfile by name, exactly as the Procfile writes it (its ${...} defaults
# expanded by the shell, as honcho does), replacing this shell so signals reach it directly.
# The Docker image's services and `make stack` start processes through it.
#
#   scripts/procfile-exec.sh web        PROCFILE=/path/to/Procfile scripts/procfile-exec.sh beat
set -eu

name=${1:?usage: procfile-exec.sh NAME}
procfile=${PROCFILE:-$(dirname "$0")/../Procfile}
line=$(sed -n "s/^$name:[[:space:]]*//p" "$procfile")
if [ -z "$line" ]; then
  echo "procfile-exec: no process named '$name' in $procfile" >&2
  exit 2
fi
# `env` lets a line start with VAR=value assignments (the worker lines do), which a bare `exec` cannot take.
eval "exec env $line"
