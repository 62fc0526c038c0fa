#!/usr/bin/env bash
# Train study runs on a GPU machine, then pack the finished run folders into one tarball to bring home.
#
# Run it on the GPU machine itself, in a clone of this repository whose environment is set up
# (`make setup`, or any Python with derainlib's dependencies, chosen with PYTHON=...):
#
#   bash scripts/gpu_runs.sh [-p PROFILE] [-w WORKERS] [-H HOURS] [-o BUNDLE] [-b] [-l] [RUN_ID ...]
#
#   -p PROFILE  study profile whose queue is worked through (default: gpu; cpu works too)
#   -w WORKERS  training processes sharing the queue (default: one per GPU; several small runs fit on one
#               GPU, so raising it often helps); with several GPUs, worker i uses GPU i mod count
#   -H HOURS    start no new run after HOURS hours (a started run finishes); default: no limit
#   -o BUNDLE   the tarball to write (default: build/gpu-runs-PROFILE-YYYYmmdd-HHMMSS.tgz in the clone)
#   -b          train nothing: bundle every finished run (or the RUN_IDs given) as it is now
#   -l          print the queue and each run's state, then exit
#   RUN_ID ...  train only these runs (default: the whole queue; `-l` lists the ids)
#
# The queue is resumable: a run stopped for any reason (Ctrl-C, a lost connection, a reboot) continues
# from its last checkpoint when this script is started again. The tarball holds the runs that finished
# during this call (with -b: every finished run), each as results/PROFILE/.../runs/RUN_ID/ with its model,
# metrics and logs but without the intermediate checkpoints. On your own machine, in your clone:
#
#   tar xzf gpu-runs-PROFILE-....tgz
#
# Environment: PYTHON (default .venv/bin/python, else python3), LOG_DIR (the workers' logs; default
# build/gpu-runs-logs), CUDA_VISIBLE_DEVICES (when set, the workers share the GPUs it names as CUDA does),
# RUNS_DIR (where the queue keeps its run folders, inside the repository; default: asked from derainlib).
set -euo pipefail

usage() { { echo usage:; sed -n '7,16p' "$0" | sed 's/^# \{0,1\}//'; } >&2; exit 2; }

profile=gpu workers="" hours="" bundle="" bundle_only=0 list_only=0
while getopts "p:w:H:o:blh" option; do
    case $option in
        p) profile=$OPTARG ;;
        w) workers=$OPTARG ;;
        H) hours=$OPTARG ;;
        o) bundle=$OPTARG ;;
        b) bundle_only=1 ;;
        l) list_only=1 ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
ids=("$@")
# -o and LOG_DIR are relative to where the script is started; the rest happens in the repository.
case $bundle in ''|/*) ;; *) bundle=$PWD/$bundle ;; esac
case ${LOG_DIR:-/} in /*) ;; *) LOG_DIR=$PWD/$LOG_DIR ;; esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
study=(-m derainlib.experiments.semi_drdnet --profile "$profile")
fail() { echo "gpu_runs.sh: $*" >&2; exit 1; }

# ci trains in a fresh temporary folder every time (it checks the pipeline, its runs are not kept).
[ "$profile" != ci ] || fail "the ci profile keeps no runs to bring back; use -p gpu or -p cpu"
case $workers in ''|*[!0-9]*|0) [ -z "$workers" ] || fail "-w needs a positive whole number, not '$workers'" ;; esac
[[ -z $hours || $hours =~ ^[0-9]+([.][0-9]+)?$ ]] || fail "-H needs a number of hours, not '$hours'"
wanted() {  # whether run $1 is one of the RUN_IDs (every run is, when none were given)
    local id
    [ ${#ids[@]} -gt 0 ] || return 0
    for id in "${ids[@]}"; do [ "$id" = "$1" ] && return 0; done
    return 1
}

"$PYTHON" -c "import derainlib" 2>/dev/null ||
    fail "$PYTHON cannot import derainlib and its dependencies: run \`make setup\` or set PYTHON to an environment with them"

if [ "$list_only" = 1 ]; then
    exec "$PYTHON" "${study[@]}" --list ${ids[@]+--only "${ids[@]}"}
fi

if [ ${#ids[@]} -gt 0 ]; then  # an unknown id stops here, with the study's own message, before any work
    "$PYTHON" "${study[@]}" --list --only "${ids[@]}" > /dev/null
fi
runs=${RUNS_DIR:-$("$PYTHON" -c "from derainlib.experiments.semi_drdnet import runs_root; print(runs_root('$profile'))" | tail -n 1)}
runs=$(cd "$repo" && mkdir -p "$runs" && cd "$runs" && pwd)
case $runs/ in "$repo"/*) runs_rel=${runs#"$repo"/} ;; *) fail "the run folders ($runs) are outside the repository $repo" ;; esac
logs=${LOG_DIR:-build/gpu-runs-logs}
mkdir -p "$logs"
stamp=$(date -u +%Y%m%d-%H%M%S)
bundle=${bundle:-build/gpu-runs-$profile-$stamp.tgz}
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$logs/gpu_runs.log"; }

finished_now() {  # the run ids under $runs with a metrics.json, one a line
    local dir
    for dir in "$runs"/*/; do
        [ -f "$dir/metrics.json" ] && basename "$dir"
    done
    return 0
}
declare -A finished_before=()
while IFS= read -r id; do [ -z "$id" ] || finished_before[$id]=1; done <<< "$(finished_now)"

if [ "$bundle_only" = 0 ]; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    [ "$gpus" -gt 0 ] || log "warning: nvidia-smi sees no GPU; the runs train on whatever device the $profile profile names"
    workers=${workers:-$(( gpus > 0 ? gpus : 1 ))}
    log "profile $profile, $workers worker(s), ${gpus} GPU(s), runs in $runs_rel, logs in $logs"
    log "rendering the $profile benchmark (once, before the workers start)"
    "$PYTHON" -c "from derainlib.experiments.semi_drdnet import benchmark_root; benchmark_root('$profile')" \
        > "$logs/render.log" 2>&1 || fail "rendering the benchmark failed: see $logs/render.log"

    pids=()
    for ((i = 0; i < workers; i++)); do
        # Each worker takes the next run nobody has locked, so they share the queue without a plan.
        if [ "$gpus" -gt 1 ] && [ -z "${CUDA_VISIBLE_DEVICES:-}" ]; then gpu=(env CUDA_VISIBLE_DEVICES=$((i % gpus))); else gpu=(); fi
        ${gpu[@]+"${gpu[@]}"} "$PYTHON" "${study[@]}" ${hours:+--budget-hours "$hours"} ${ids[@]+--only "${ids[@]}"} \
            > "$logs/worker-$i.log" 2>&1 &
        pids+=($!)
        log "worker $i started (pid $!, log $logs/worker-$i.log)"
        sleep 1  # the workers lock runs one after another rather than all at the same instant
    done
    failed=0
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            failed=$((failed + 1))
            log "worker $i failed: the end of $logs/worker-$i.log:"
            tail -n 5 "$logs/worker-$i.log" | sed 's/^/    /' | tee -a "$logs/gpu_runs.log"
        fi
    done
    [ "$failed" = 0 ] || log "$failed worker(s) failed; the finished runs are still packed"
fi

# What to pack: the runs finished by this call (-b: every finished run), limited to RUN_IDs when given.
selected=()
while IFS= read -r id; do
    [ -n "$id" ] || continue
    if [ "$bundle_only" = 0 ] && [ -n "${finished_before[$id]:-}" ]; then continue; fi
    wanted "$id" && selected+=("$runs_rel/$id")
done <<< "$(finished_now)"
for dir in "$runs"/*/; do
    id=$(basename "$dir")
    # Folders named _* are not runs (e.g. _stability holds the stability diagnostics).
    [ -d "$dir" ] && [ ! -f "$dir/metrics.json" ] && [ "${id#_}" = "$id" ] && wanted "$id" || continue
    log "unfinished: $id (start this script again here and it resumes from its last checkpoint)"
done

if [ ${#selected[@]} -eq 0 ]; then
    log "no finished run to pack"
    exit 1
fi
mkdir -p "$(dirname "$bundle")"
# Intermediate checkpoints (whole or in parts), a writer's temporary files and the queue's lock stay here.
tar -czf "$bundle.partial" -C "$repo" --exclude='checkpoint.pt' --exclude='checkpoint.pt.part-*' \
    --exclude='.*.pt' --exclude='running.lock' "${selected[@]}"
mv "$bundle.partial" "$bundle"
log "packed ${#selected[@]} finished run(s) into $bundle ($(du -h "$bundle" | cut -f1)):"
printf '    %s\n' "${selected[@]}" | tee -a "$logs/gpu_runs.log"
log "bring it back and unpack it in your clone: tar xzf $(basename "$bundle")"
