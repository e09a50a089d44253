#!/usr/bin/env bash
# A one-shot GPU benchmark: every GPU figure of the project in one run of under 10 minutes on one
# CUDA machine, prepared beforehand so that nothing needs installing or improvising there.
#
#   once, beside the data:  bash benchmarks/gpu_session.sh prepare DATA_ROOT
#                           (DATA_ROOT holds cifar10/{train,test}/<class>/*.jpg and photos/*.jpg;
#                           packs runs/carry: CIFAR-10 as JPEG bytes, about 18 MB, and the photos)
#   dry run on a CPU:       DEVICE=cpu QUICK=1 bash benchmarks/gpu_session.sh run
#   on the GPU machine:     copy the repository and runs/carry, then bash benchmarks/gpu_session.sh run
#
# Steps, most wanted first: the batched kernel's throughput and memory (its separable passes as
# batched matmuls, then as gathers, to choose resample.DEVICE_METHOD), the tests on CUDA, the input
# pipeline (shards, nvJPEG, BatchCropMix), the paper's CIFAR recipe, baseline vs CropMix.
# Each step has its own time limit and log ($OUT/<step>.log), so one that fails or runs long does
# not cost the others their figures.
set -uo pipefail

CARRY=runs/carry
mode=${1:-run}

if [ "$mode" = prepare ]; then
    data=${2:?"usage: $0 prepare <folder holding cifar10/ (JPEG ImageFolder) and photos/>"}
    mkdir -p "$CARRY"
    prep_python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
    "$prep_python" examples/cifar10_subset/make_subset.py --src "$data/cifar10" --all --out "$CARRY/cifar10_jpeg.npz" || exit 1
    rm -rf "$CARRY/photos" && cp -r "$data/photos" "$CARRY/photos" || exit 1
    du -sh "$CARRY"
    exit 0
fi
if [ "$mode" != run ]; then
    echo "usage: $0 prepare <data folder> | run" >&2
    exit 2
fi
for need in "$CARRY/cifar10_jpeg.npz" "$CARRY/photos"; do
    [ -e "$need" ] || { echo "$need is missing: run '$0 prepare <data folder>' first and carry $CARRY" >&2; exit 1; }
done

OUT=${OUT:-runs/gpu_session}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

# step NAME LIMIT_SECONDS COMMAND...: run it, keep its log, show its tail.
step() {
    local name=$1 limit=$2 start rc
    shift 2
    echo "== $name (limit ${limit} s): $*"
    start=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "   rc=$rc after $(($(date +%s) - start)) s"
    tail -n 30 "$OUT/$name.log"
}

if [ "$QUICK" = 1 ]; then  # the same commands, tiny, to check them on a CPU
    rounds=1 images=512 seconds=2 epochs=2 corruption=20 tests="tests/test_resample.py"
    cifar=(--npz examples/cifar10_subset/cifar10_subset.npz --max-train-images 256 --batch 64)
else
    rounds=10 images=10000 seconds=20 epochs=24 corruption=1000
    tests="tests/test_batch.py tests/test_resample.py tests/test_cropmix.py tests/test_shards.py tests/test_train.py"
    cifar=(--npz "$CARRY/cifar10_jpeg.npz")
fi

step env 30 bash -c "nvidia-smi || true; $PY -c 'import sys, torch, torchvision; print(sys.version); \
print(\"torch\", torch.__version__, \"torchvision\", torchvision.__version__, \"cuda\", torch.cuda.is_available())'; \
for m in numpy scipy PIL pytest kornia webdataset timm; do \
$PY -c \"import \$m; print('\$m', getattr(\$m, '__version__', ''))\" 2>/dev/null || echo \"\$m: missing\"; done; nproc; free -g"
step batch_throughput 100 "$PY" benchmarks/batch_throughput.py --device "$DEVICE" --rounds "$rounds" \
    --threads 4 --photos "$CARRY/photos"
step batch_throughput_gather 60 "$PY" benchmarks/batch_throughput.py --device "$DEVICE" --rounds 5 \
    --threads 4 --photos "$CARRY/photos" --device-method gather
# shellcheck disable=SC2086  # $tests is a list of files
step tests 110 "$PY" -m pytest -q -p no:cacheprovider --continue-on-collection-errors -W ignore::DeprecationWarning $tests
step input_pipeline 90 "$PY" -W ignore benchmarks/input_pipeline.py --device "$DEVICE" --photos "$CARRY/photos" \
    --images "$images" --rounds 3 --seconds "$seconds" --work "$OUT/pipeline_work"
rm -rf "$OUT/pipeline_work"
step paper_cifar 200 "$PY" benchmarks/paper_cifar.py --regime gpu --device "$DEVICE" "${cifar[@]}" \
    --epochs "$epochs" --corruption-images "$corruption" --out "$OUT/paper_cifar" --results "$OUT/paper_cifar.md"
# Keep the figures, not the checkpoints: the device tool returns what is under $OUT.
find "$OUT/paper_cifar" -name "*.pt" -delete 2>/dev/null
echo "== done: logs in $OUT"
