#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one command for a borrowed GPU machine (CI has none):
# the gpu-marked tests, the second-order MAML speed benchmark against higher and TorchOpt (our
# vmapped, looped and compiled paths, with and without a CUDA graph, float32 and bfloat16), the
# ResNet-12 meta-step at mini-ImageNet's 84x84 beside conv4 with peak memory (RESNET12=0 skips),
# ProtoNets' training step under each batching (PROTONET=1 runs it),
# and optionally short Omniglot 5-way 1-shot MAML runs in float32 and bfloat16. Logs, the
# benchmark's JSON, and RESULTS.md and history/ as the runs left them (each run replaces its
# section of RESULTS.md and archives the old one in history/) go to OUT_DIR: copy those two back.
#
# Usage: bash scripts/gpu_check.sh OUT_DIR DATA_DIR [MINUTES_PER_RUN] [SETTING...]
#   MINUTES_PER_RUN: training budget of each Omniglot run; 0 (the default) skips them.
#   SETTING: the benchmark's settings (default: 5way 20way).
#   TESTS="..." in the environment: which gpu-marked tests run (a pytest -k expression;
#   default "not compiled"); TESTS=0 runs none.
#   PATHS="ours: vmap,higher,..." (comma-separated) picks the benchmark's paths; the default
#   is every CUDA path but the compiled ones. Those compile twice per setting (float32, then
#   the float64 check), 40-110 s each on a 2-core CPU and not yet timed on a GPU machine, so
#   they get a call of their own, with their tests, one setting per call where a call may run
#   10 minutes:
#   TESTS=compiled PATHS="ours: compiled,ours: compiled+graph,ours: compiled bf16,torchopt" \
#       bash scripts/gpu_check.sh OUT_DIR DATA_DIR 0 5way
# Uses $PYTHON (default python3) with torch, and the packages of pyproject.toml importable;
# the benchmark's libraries may come as wheels in .whl/ (installed to /tmp/site, no network),
# fetched beforehand where there is a network; optree is compiled, so fetch it for each Python
# the GPU machine may have (pip picks the one that fits):
#   for v in 3.10 3.11 3.12 3.13; do pip download --no-deps --only-binary=:all: \
#       --python-version $v -d .whl higher torchopt optree graphviz; done
# and learn2learn, which has no wheel on PyPI, built for the GPU machine's Python (3.12 there
# in 2026-11): bash benchmarks/learn2learn_wheel.sh .whl ~/.pyenv/versions/3.12.1/bin/python
set -uo pipefail
out=${1:?OUT_DIR}
data=${2:?DATA_DIR}
minutes=${3:-0}
settings=("${@:4}")
[ ${#settings[@]} -eq 0 ] && settings=(5way 20way)
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."
site() {
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --find-links .whl --target /tmp/site "$@"
}
if compgen -G ".whl/*.whl" >/dev/null; then
    site higher torchopt optree graphviz && export PYTHONPATH=/tmp/site
    # Apart: learn2learn's wheel fits one Python only, and without it the others still run.
    compgen -G ".whl/learn2learn-*.whl" >/dev/null && site learn2learn gym gym_notices
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
cp benchmarks/RESULTS.md /tmp/RESULTS.before.md
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

tests=${TESTS:-not compiled}
if [ "$tests" != 0 ]; then
    timeout 180 $py -m pytest -m gpu -k "$tests" tests/test_cuda.py -q -p no:cacheprovider \
        2>&1 | tee "$out/tests.log"
fi

default="ours: vmap,ours: vmap bf16,ours: loop+graph,ours: loop+graph bf16,ours: vmap+graph"
IFS=, read -r -a paths <<<"${PATHS:-$default,higher,torchopt,learn2learn}"
timeout 380 $py benchmarks/maml_speed.py --device cuda --repeats 10 --record \
    --settings "${settings[@]}" --paths "${paths[@]}" 2>&1 | tee "$out/speed.log"
cp benchmarks/maml_speed.json "$out/" 2>/dev/null

# mini-ImageNet-shaped second-order MAML with ResNet-12 beside conv4 (84x84 RGB, 5-way 1-shot):
# time and peak memory, what learn2learn and TorchOpt users run out of memory on.
[ "${RESNET12:-1}" != 0 ] && timeout 240 $py benchmarks/resnet12_speed.py --device cuda \
    --rounds 10 --record 2>&1 | tee "$out/resnet12.log"

# ProtoNets' training step under each batching (loop, vmap, compiled) on the GPU: what
# ProtoNet.MEASURED's "cuda" entry, and so batching: auto there, should rest on.
[ "${PROTONET:-0}" != 0 ] && timeout 300 $py benchmarks/protonet_batching.py --data-dir "$data" \
    --device cuda --rounds 1 2>&1 | tee "$out/protonet-batching.log"

for precision in float32 bfloat16; do
    [ "$minutes" = 0 ] && break
    timeout 130 $py benchmarks/omniglot.py --data-dir "$data" --out "/tmp/runs-$precision" \
        --run "omniglot-5w1s-maml:$minutes:95.0" --set device=cuda \
        --set precision=$precision 2>&1 | tee "$out/omniglot-$precision.log"
done
diff /tmp/RESULTS.before.md benchmarks/RESULTS.md >"$out/RESULTS.diff"
cp benchmarks/RESULTS.md "$out/RESULTS.md"
mkdir -p "$out/history" && cp benchmarks/history/*.md "$out/history/"
