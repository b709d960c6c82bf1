#!/usr/bin/env bash
# Creates .venv and installs metalearner with its optional parts (search, rl, postgres,
# tensorboard, text) and dev tools. torch is pinned to 2.13.0 through constraints.txt so that a CPU machine takes the local CPU
# wheel, not gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,search,rl,postgres,tensorboard,text]'
