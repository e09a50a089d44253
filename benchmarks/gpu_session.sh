#!/usr/bin/env bash
# The one prepared GPU run: every GPU figure of the project in one command of at most $BUDGET seconds
# (default 570, 9.5 minutes) on one CUDA machine that has torch and torchvision but no network.
#
#   here, with a network:   bash benchmarks/gpu_session.sh prepare DATA_ROOT   (or: make gpu-prepare DATA=...)
#                           DATA_ROOT holds cifar10/{train,test}/<class>/*.jpg and photos/*.jpg. Fills
#                           runs/carry (git-ignored, ~26 MB): CIFAR-10 as JPEG bytes in one .npz (~18 MB),
#                           the photos, and the kornia and kornia_rs wheels for the GPU machine's Python
#                           ($GPU_PYTHON, default 3.12) downloaded with pip.
#   dry run on a CPU:       QUICK=1 OUT=runs/gpu_dry bash benchmarks/gpu_session.sh run
#   on the GPU machine:     with the repository and runs/carry there: OUT=... bash benchmarks/gpu_session.sh run
#
# Steps, most wanted first: a probe (imports, CUDA, one sync-checked BatchCropMix list call; if it
# fails the run ends there), the batched kernel's throughput and memory (dense matmul passes, then
# gathers), nvJPEG's race with the caller's stream (plain decode vs cropmix's), the tests on CUDA, the input pipeline (shards, nvJPEG, BatchCropMix vs a per-image
# DataLoader), the paper's CIFAR recipe (baseline vs CropMix: train, eval, compare). Each step's time
# limit is its share of the time left (unused time passes on to the steps after it) and is handed to
# the scripts that can use it. Python output is unbuffered, so a step stopped at its limit keeps what
# it printed. $OUT ends with four files, whenever the run stops: session.log (the steps, their exit
# status and time), steps.log (everything every step printed, as it printed it), summary.md (one row
# per step) and results.tar.gz (the figures files, the CIFAR runs' metrics, tables and plots, no
# checkpoints), rewritten after each step.
set -uo pipefail

CARRY=${CARRY:-runs/carry}
GPU_PYTHON=${GPU_PYTHON:-3.12}
WHEELS=(kornia==0.9.0 kornia_rs==0.2.0)  # kornia needs kornia_rs, numpy and torch; the GPU machine has the last two
mode=${1:-run}
PY=${PYTHON:-python3}

if [ "$mode" = prepare ]; then
    data=${2:?"usage: $0 prepare <folder holding cifar10/ (JPEG ImageFolder) and photos/>"}
    prep_python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
    mkdir -p "$CARRY/wheels" || exit 1
    if [ ! -s "$CARRY/cifar10_jpeg.npz" ]; then
        PYTHONPATH="$PWD/src" "$prep_python" examples/cifar10_subset/make_subset.py --src "$data/cifar10" --all \
            --out "$CARRY/cifar10_jpeg.npz" || exit 1
    fi
    rm -rf "$CARRY/photos" && cp -r "$data/photos" "$CARRY/photos" || exit 1
    rm -f "$CARRY"/wheels/*.whl
    "$prep_python" -m pip download -q --no-deps --only-binary=:all: --python-version "$GPU_PYTHON" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$CARRY/wheels" "${WHEELS[@]}" || exit 1
    du -sh "$CARRY" "$CARRY"/*
    exit 0
fi
if [ "$mode" != run ]; then
    echo "usage: $0 prepare <data folder> | run" >&2
    exit 2
fi
for need in "$CARRY/cifar10_jpeg.npz" "$CARRY/photos"; do
    [ -e "$need" ] || { echo "$need is missing: run '$0 prepare <data folder>' first and carry $CARRY" >&2; exit 1; }
done

START=$(date +%s)
BUDGET=${BUDGET:-570}
DEADLINE=$((START + BUDGET))
RESERVE=5  # seconds kept for the last packing
OUT=${OUT:-runs/gpu_session}
QUICK=${QUICK:-0}
if [ -z "${DEVICE:-}" ]; then  # the dry run falls back to the CPU where CUDA is missing; the real one insists
    DEVICE=cuda
    if [ "$QUICK" = 1 ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
        DEVICE=cpu
    fi
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_session.XXXXXX") || exit 1
mkdir -p "$OUT" "$WORK/logs" "$WORK/results" || exit 1
export PYTHONUNBUFFERED=1 CROPMIX_RESULTS_DIR="$WORK/results"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
STEPS_LOG=$OUT/steps.log
: >"$OUT/session.log"
: >"$STEPS_LOG"
printf '| step | exit status | seconds | limit s |\n|---|---|---|---|\n' >"$WORK/summary.md"

say() { echo "$*" | tee -a "$OUT/session.log"; }
left() { echo $((DEADLINE - $(date +%s))); }

# $OUT holds the same four files whenever the run stops: the logs as they grow, the rest rewritten here.
pack() {
    { echo "# GPU session, device $DEVICE, QUICK=$QUICK, budget $BUDGET s"; echo; cat "$WORK/summary.md"; } \
        >"$OUT/summary.md.tmp" && mv "$OUT/summary.md.tmp" "$OUT/summary.md"
    tar czf "$OUT/results.tar.gz.tmp" --exclude='*.pt' -C "$WORK" results paper_cifar 2>/dev/null
    mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"
}

# share WEIGHT: LIMIT = this step's share of the time left, WEIGHT out of the weights of the steps still to run.
PENDING=0
share() {
    local weight=$1
    LIMIT=$(( ($(left) - RESERVE) * weight / PENDING ))
    PENDING=$((PENDING - weight))
}

# step NAME COMMAND...: run it under LIMIT, its output to $STEPS_LOG as it comes; then its tail and a summary row.
step() {
    local name=$1 begin rc
    shift
    if [ "$LIMIT" -lt 5 ]; then
        say "== $name: skipped, $(left) s left"
        echo "| $name | skipped | 0 | $LIMIT |" >>"$WORK/summary.md"
        return 0
    fi
    say "== $name (limit $LIMIT s, $(left) s left): $*"
    echo "===== $name (limit $LIMIT s): $*" >>"$STEPS_LOG"
    begin=$(date +%s)
    timeout --kill-after=10 "$LIMIT" "$@" 2>&1 | tee "$WORK/logs/$name.log" >>"$STEPS_LOG"
    rc=${PIPESTATUS[0]}
    say "   $name: exit status $rc after $(($(date +%s) - begin)) s$([ "$rc" = 124 ] && echo ' (stopped at its limit)')"
    tail -n 25 "$WORK/logs/$name.log"
    echo "| $name | $rc | $(($(date +%s) - begin)) | $LIMIT |" >>"$WORK/summary.md"
    pack
    return "$rc"
}

if [ "$QUICK" = 1 ]; then  # the same commands, tiny, to check them on a CPU
    rounds=1 images=512 pipeline_rounds=1 epochs=2 corruption=20 tests="tests/test_device_decode.py"
    cifar=(--npz examples/cifar10_subset/cifar10_subset.npz --max-train-images 256 --max-test-images 200 --batch 64
        --model fastnet --model-kwargs '{"widths": [8, 16, 32, 64]}')
else
    rounds=7 images=10000 pipeline_rounds=3 epochs=${EPOCHS:-16} corruption=500
    tests="tests/test_batch.py tests/test_batch_devices.py tests/test_resample.py tests/test_cropmix.py tests/test_device_decode.py
           tests/test_shards.py tests/test_shard_limits.py tests/test_train_shards.py tests/test_train.py tests/test_device_stage.py
           tests/test_image_decoders.py"
    cifar=(--npz "$CARRY/cifar10_jpeg.npz")
fi

say "GPU session: device $DEVICE, QUICK=$QUICK, budget $BUDGET s, out $OUT, work $WORK"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$OUT/session.log"
say "$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB memory"

if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then  # kornia, for its RandomResizedCrop beside BatchCropMix
    echo "===== wheels: ${WHEELS[*]}" >>"$STEPS_LOG"
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
        "$CARRY"/wheels/*.whl >>"$STEPS_LOG" 2>&1; then
        export PYTHONPATH="$PYTHONPATH:$WORK/site"
        say "wheels installed into $WORK/site: $(cd "$CARRY/wheels" && ls)"
    else
        say "wheels not installed (built for Python $GPU_PYTHON; see steps.log): kornia only if this Python has it"
    fi
fi

PENDING=1 && share 1 && LIMIT=$((LIMIT < 40 ? LIMIT : 40))
if ! step probe "$PY" benchmarks/gpu_probe.py --device "$DEVICE" --sync-check "${SYNC_CHECK:-error}"; then
    say "== the probe failed (above): the session ends here, before the timed steps spend the machine's time."
    say "   A host synchronisation in the list call: SYNC_CHECK=warn runs the session anyway."
    exit 1
fi

PENDING=$((90 + 45 + 15 + 100 + 80 + 200))
share 90
step batch_throughput "$PY" benchmarks/batch_throughput.py --device "$DEVICE" --rounds "$rounds" \
    --threads 4 --photos "$CARRY/photos"
share 45
step batch_throughput_gather "$PY" benchmarks/batch_throughput.py --device "$DEVICE" --rounds "$((rounds < 3 ? rounds : 3))" \
    --threads 4 --photos "$CARRY/photos" --device-method gather
share 15
if [ "$DEVICE" = cpu ]; then
    say "== nvjpeg_race: skipped on the CPU (it measures nvJPEG)"
else
    step nvjpeg_race "$PY" benchmarks/nvjpeg_race.py --device "$DEVICE" --iterations "$((QUICK == 1 ? 5 : 50))"
fi
share 100
# shellcheck disable=SC2086  # $tests is a list of files
step tests "$PY" -m pytest -v -rfE -p no:cacheprovider --continue-on-collection-errors -W ignore::DeprecationWarning $tests
share 80
seconds=$((LIMIT / 12 > 20 ? 20 : (LIMIT / 12 < 2 ? 2 : LIMIT / 12)))
step input_pipeline "$PY" -W ignore benchmarks/input_pipeline.py --device "$DEVICE" --photos "$CARRY/photos" \
    --images "$images" --rounds "$pipeline_rounds" --seconds "$seconds" --work "$WORK/pipeline_work"
rm -rf "$WORK/pipeline_work"
share 200
step paper_cifar "$PY" benchmarks/paper_cifar.py --regime gpu --device "$DEVICE" "${cifar[@]}" --epochs "$epochs" \
    --corruption-images "$corruption" --time-budget "$((LIMIT - 10))" --out "$WORK/paper_cifar" \
    --results "$WORK/results/paper_cifar_table.md"

find "$WORK/paper_cifar" -name '*.pt' -delete 2>/dev/null
pack
say "== done in $(($(date +%s) - START)) s of $BUDGET; $OUT holds $(find "$OUT" -type f | wc -l) files: $(cd "$OUT" && ls | tr '\n' ' ')"
rm -rf "$WORK"
