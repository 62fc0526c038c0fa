#!/bin/bash
# Train study runs in parallel on a lent GPU machine and bring every result back through $OUT.
#
#   bash scripts/device_runs.sh PROFILE LIMIT_S RUN_ID...
#
# Runs `python -m derainlib.experiments.semi_drdnet --profile PROFILE --only RUN_ID` for each id,
# SLOTS (default 8) at a time, and stops them LIMIT_S seconds after it started (a stopped run keeps its
# last checkpoint and resumes anywhere). Then it packs, under $OUT:
#   finished.tgz                   the finished runs' folders, without checkpoint.pt
#   unfinished.tgz.part-aa, -ab... the unfinished runs' folders with their checkpoints, in 15 MB parts
#   logs.tgz, job.log
# Unpack here with `tar xzf finished.tgz` and `cat unfinished.tgz.part-* | tar xz` in the repository root.
#
# What it works around (seen on a lent H100, 2026-11-26):
# - $OUT brings back at most 8 files of 16 MiB each: one tarball of 8 semi-supervised runs with their
#   checkpoints (3.3 MB each) was left behind, and with it the runs.
# - The next call re-sends the working tree: run folders made there, and a carried folder, are replaced,
#   so everything must come back in the same call.
# - The machine has torch but not derainlib installed: PYTHONPATH is set here.
# - The HED VGG-16 cache (59 MB) does not fit beside the repository in the 64 MiB that travels. Carry
#   bf16-rounded weights (29 MB) as DERAINLIB_CACHE: under bf16 autocast the VGG's outputs are bit-identical.
#
# Before the call, here: the tracked tree is ~87 MB, over the 64 MiB that travels, so move the committed
# model.pt files, figures/ and notebooks/ out of the working tree for the call (and back after it), and
# write the bf16 weights into an ignored folder that the call carries:
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/cache; git rev-parse HEAD > .gpu/COMMIT
#   .venv/bin/python -c "import torch; from derainlib.losses.contrastive import hed_vgg16_state_dict as h; \
#       torch.save({k: v.bfloat16() for k, v in h().items()}, '.gpu/cache/vgg16_hed_bsds500.pt')"
# and in the call (carry [".gpu"]):
#   DERAINLIB_CACHE=$PWD/.gpu/cache DERAINLIB_COMMIT=$(cat .gpu/COMMIT) bash scripts/device_runs.sh cpu 480 ID...
set -u
[ $# -ge 3 ] || { echo "usage: $0 PROFILE LIMIT_S RUN_ID..." >&2; exit 2; }
profile=$1 limit=$2; shift 2
out=${OUT:?set OUT to the folder that comes back}
runs=${RUNS_DIR:-results/$profile/semi_drdnet/runs}
started=$(date +%s)
left() { echo $(( limit - ($(date +%s) - started) )); }
log() { echo "[$(( $(date +%s) - started ))s] $*" | tee -a "$out/job.log"; }
py=${PYTHON:-python3}  # the machine's python holds torch
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$out" build/device-logs

log "rendering the $profile benchmark"
"$py" -c "from derainlib.experiments.semi_drdnet import benchmark_root; benchmark_root('$profile')" \
    > build/device-logs/render.log 2>&1 || log "rendering failed: see logs.tgz"
for id in "$@"; do
    while [ "$(jobs -r | wc -l)" -ge "${SLOTS:-8}" ]; do sleep 2; done
    [ "$(left)" -gt 60 ] || { log "no time left to start $id"; break; }
    log "start $id"
    OMP_NUM_THREADS=${THREADS:-2} timeout "$(( $(left) - 20 ))" \
        "$py" -m derainlib.experiments.semi_drdnet --profile "$profile" --only "$id" > "build/device-logs/$id.log" 2>&1 &
done
wait

log "packing"
finished=() unfinished=()
for id in "$@"; do
    [ -d "$runs/$id" ] || continue
    rm -f "$runs/$id/running.lock"
    if [ -f "$runs/$id/metrics.json" ]; then finished+=("$runs/$id"); else unfinished+=("$runs/$id"); fi
done
[ ${#finished[@]} -eq 0 ] || tar czf "$out/finished.tgz" --exclude=checkpoint.pt "${finished[@]}"
[ ${#unfinished[@]} -eq 0 ] || tar cz "${unfinished[@]}" | split -b 15M - "$out/unfinished.tgz.part-"
tar czf "$out/logs.tgz" build/device-logs
log "finished: ${#finished[@]}, unfinished: ${#unfinished[@]}"
