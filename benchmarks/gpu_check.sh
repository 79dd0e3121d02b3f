#!/usr/bin/env bash
# One GPU check: the test suite with CUDA present, and the GPU benchmarks (extraction against the bare
# encoder, every label-free frozen method at 1,000,000 x 768 x 1000 classes, ReCLIP's and FAIR's epochs
# against bare loops), then one summary table. Sized for about 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh                 # from anywhere; logs and summary.md in $OUT
#
# Environment: OUT (logs; default gpu_check_out), PYTHON (python3), DEVICE (cuda), CLIPADAPT_WHURS19 (the
# WHU-RS19 feature files, for the CPU/GPU agreement tests), QUICK=1 (tiny sizes, a few tests: a dry run of
# this script on any machine). Wheels in .whl/ are installed into /tmp/site first: what the lent GPU machine
# lacks (../shared/gpu/README.md), fetched beforehand on a machine with the registry:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     open_clip_torch ftfy wcwidth webdataset braceexpand faiss-cpu
# then one device run with carry [".whl"] (and a copy of the WHU-RS19 files in an ignored folder, named by
# CLIPADAPT_WHURS19, for the CPU/GPU agreement tests) running `bash benchmarks/gpu_check.sh`: the device
# tool's $OUT is where the seven files land.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
: > "$OUT/steps"
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src
fi
export PYTHONPATH=${PYTHONPATH:-$PWD/src} CLIPADAPT_CACHE=${CLIPADAPT_CACHE:-/tmp/clipadapt-cache}
export MPLBACKEND=Agg PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, record exit and seconds
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    echo "$name $rc $(( $(date +%s) - start ))" >> "$OUT/steps"
    echo "== $name: exit $rc after $(( $(date +%s) - start )) s"
}

if [ "$QUICK" = 1 ]; then
    TESTS=(tests/test_device.py tests/test_distributed.py)
    EXTRACT=(--model clipadapt-tiny-vit --pretrained random --images 128 --batch_size 32 --repeats 1)
    SCALE=(--n 5000 --dim 128 --classes 50)
    TUNE=(--model toyclip --images 64)
else
    TESTS=()
    EXTRACT=(--model ViT-B-32 --pretrained random --images 3072 --batch_size 256 --num_workers 12 --repeats 2 --compare)
    SCALE=(--n 1000000 --dim 768 --classes 1000)
    TUNE=(--model ViT-B-32 --pretrained random --images 1024)
fi
XDIST=()
"$PY" -c "import xdist" 2> /dev/null && XDIST=(-n 8)

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "no nvidia-smi"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
    nproc
} > "$OUT/machine.log" 2>&1
step tests 200 env OMP_NUM_THREADS=2 "$PY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" "${TESTS[@]}"
step extraction 100 "$PY" benchmarks/extraction_throughput.py --device "$DEVICE" "${EXTRACT[@]}"
step scale 190 "$PY" benchmarks/transductive_scale.py --device "$DEVICE" "${SCALE[@]}"
step tuning 80 "$PY" benchmarks/encoder_tuning_throughput.py --device "$DEVICE" "${TUNE[@]}"

"$PY" - "$OUT" << 'EOF'
"""One summary table of the check's steps (read from the logs)."""
import re
import sys
from pathlib import Path

out = Path(sys.argv[1])
log = lambda name: (out / f"{name}.log").read_text(errors="replace") if (out / f"{name}.log").exists() else ""
lines = ["# clipadapt GPU check", "", "machine: " + " | ".join(log("machine").split("\n")[:2]), ""]
lines += ["| step | exit | seconds | result |", "|---|---|---|---|"]
for row in (out / "steps").read_text().split("\n"):
    if not row.strip():
        continue
    name, rc, seconds = row.split()
    text = log(name)
    if name == "tests":
        found = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in [\d.]+s", text, re.M)
        result = found[-1] if found else text.strip().split("\n")[-1][:150]
    else:
        keep = [l.strip() for l in text.split("\n") if re.search(r"ratio|images/s|^generated|^reclip|^fair", l.strip())]
        result = "<br>".join(keep) or text.strip().split("\n")[-1][:150]
    status = "timed out" if rc in ("124", "137") else rc
    lines.append(f"| {name} | {status} | {seconds} | {result} |")
summary = "\n".join(lines) + "\n"
(out / "summary.md").write_text(summary)
print(summary)
EOF
