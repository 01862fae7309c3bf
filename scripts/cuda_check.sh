#!/bin/bash
# The CUDA check, for a lent GPU machine (the device tool: its command runs in the repository root
# and returns what it writes under $OUT). The whole ci catalogue on torch-cuda, capped so that the
# results come back; then its non-pass records are packed for `nnconform findings`.
#   CAP_S (default 300): seconds before the run is interrupted (it then leaves a valid, incomplete
#   report); JOBS (default 14); OPS (default every entry).
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
start=$(date +%s)
{ nvidia-smi -L; python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"; } > "$OUT/env.txt" 2>&1
ops=()
[ -n "${OPS:-}" ] && ops=(--ops "$OPS")
timeout -s INT -k 20 "${CAP_S:-300}" python3 -m conformance.cli run --backend torch-cuda --profile ci -j "${JOBS:-14}" \
    --timeout 60 --report-dir /tmp/cuda-run --quiet "${ops[@]}" > "$OUT/run.log" 2>&1
echo "run rc=$? after $(( $(date +%s) - start )) s" >> "$OUT/env.txt"
python3 scripts/pack_run.py /tmp/cuda-run "$OUT/cuda" >> "$OUT/env.txt" 2>&1
