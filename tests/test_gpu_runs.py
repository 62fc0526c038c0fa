"""scripts/gpu_runs.sh: train study runs on a GPU machine and pack the finished ones to bring home.

The script runs in a copy of the repository under tmp_path, with a stand-in Python that does what a queue
worker does to its run folders (no training), so each test takes seconds; the last test lets the real
study command read the arguments the script gave its workers.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from derainlib import REPO_ROOT
from derainlib.experiments import semi_drdnet

SCRIPT = REPO_ROOT / "scripts" / "gpu_runs.sh"
RUNS = "results/gpu/semi_drdnet/runs"
# A worker: claims each id of --only nobody claimed (as the queue's lock does), then leaves a finished run
# folder behind (an id ending in "-s1" stops early, with a checkpoint). The render call and the import
# check (python -c ...) do nothing.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-} $*" >> "$CALLS"
[ "$1" = -m ] || exit 0
case " $* " in *" --list "*) exit 0 ;; esac  # the script's check of the run ids
ids=() take=0
for arg in "$@"; do
    case $arg in --only) take=1 ;; --*) take=0 ;; *) [ $take = 1 ] && ids+=("$arg") ;; esac
done
for id in "${ids[@]}"; do
    mkdir "$CLAIMS/$id" 2>/dev/null || continue
    run=$RUNS_DIR/$id
    mkdir -p "$run"
    touch "$run/running.lock"
    echo checkpoint > "$run/checkpoint.pt"
    echo partial > "$run/.model.x1y2.pt"
    [ "${id%-s1}" = "$id" ] || continue
    echo model > "$run/model.pt"
    echo "step,loss" > "$run/log.csv"
    echo "{}" > "$run/metrics.json"
    rm "$run/checkpoint.pt" "$run/running.lock"
done
"""


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A repository copy holding the script, one run finished earlier and fake ``python``/``nvidia-smi``."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, repo / "scripts" / SCRIPT.name)
    earlier = repo / RUNS / "old-s0"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text("{}")
    (earlier / "model.pt").write_text("model")
    (earlier / "checkpoint.pt.part-aa").write_text("a parked checkpoint")
    (repo / RUNS / "_stability" / "literal").mkdir(parents=True)  # not a run: never reported nor packed
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"python": FAKE_PYTHON,
                       "nvidia-smi": '#!/bin/sh\necho "GPU 0: Fake (UUID: a)"\necho "GPU 1: Fake (UUID: b)"\n'}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    (tmp_path / "claims").mkdir()
    return repo


def run_script(clone: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    tmp = clone.parent
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "LOG_DIR", "PYTHON")}
    env |= {"PATH": f"{tmp / 'bin'}:{env['PATH']}", "PYTHON": str(tmp / "bin" / "python"),
            "RUNS_DIR": str(clone / RUNS), "CALLS": str(tmp / "calls.txt"), "CLAIMS": str(tmp / "claims")}
    done = subprocess.run(["bash", str(clone / "scripts" / SCRIPT.name), *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def members(bundle: Path) -> set[str]:
    with tarfile.open(bundle) as archive:
        return {member.name for member in archive.getmembers() if member.isfile()}


def worker_calls(clone: Path) -> list[str]:
    return [line for line in (clone.parent / "calls.txt").read_text().splitlines()
            if " -m " in f" {line} " and "--list" not in line]


def test_workers_share_the_gpus_and_only_runs_finished_now_are_packed_without_checkpoints(clone):
    bundle = clone.parent / "out" / "bundle.tgz"
    done = run_script(clone, "-w", "3", "-H", "1.5", "-o", str(bundle), "a-s0", "b-s0", "c-s1", "old-s0")

    calls = worker_calls(clone)
    assert len(calls) == 3
    checks = [line for line in (clone.parent / "calls.txt").read_text().splitlines() if "--list" in line]
    assert [line.split(" ", 1)[1] for line in checks] == [  # the ids are checked once, before any training
        "-m derainlib.experiments.semi_drdnet --profile gpu --list --only a-s0 b-s0 c-s1 old-s0"]
    assert sorted(call.split()[0] for call in calls) == ["CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=0",
                                                          "CUDA_VISIBLE_DEVICES=1"]  # worker i: GPU i mod 2
    assert all(call.split(" ", 1)[1] == "-m derainlib.experiments.semi_drdnet --profile gpu --budget-hours 1.5 "
               "--only a-s0 b-s0 c-s1 old-s0" for call in calls)
    # a-s0 and b-s0 finished now; old-s0 had finished before; c-s1 stopped with its checkpoint.
    assert members(bundle) == {f"{RUNS}/{run}/{name}" for run in ("a-s0", "b-s0")
                               for name in ("model.pt", "log.csv", "metrics.json")}
    assert "unfinished: c-s1" in done.stdout and "packed 2 finished run(s)" in done.stdout
    assert "_stability" not in done.stdout
    assert (clone / RUNS / "c-s1" / "checkpoint.pt").exists()  # kept here, to resume from
    assert (clone / "build" / "gpu-runs-logs" / "worker-2.log").exists()
    assert "tar xzf bundle.tgz" in done.stdout


def test_bundle_only_packs_every_finished_run_and_a_run_list_limits_it(clone):
    run_script(clone, "-w", "1", "-o", str(clone.parent / "first.tgz"), "a-s0")
    everything = run_script(clone, "-b")
    bundles = list((clone / "build").glob("gpu-runs-gpu-*.tgz"))  # the default name
    assert len(bundles) == 1 and f"packed 2 finished run(s) into build/{bundles[0].name}" in everything.stdout
    assert members(bundles[0]) == {f"{RUNS}/old-s0/metrics.json", f"{RUNS}/old-s0/model.pt",
                                   f"{RUNS}/a-s0/metrics.json", f"{RUNS}/a-s0/model.pt", f"{RUNS}/a-s0/log.csv"}
    run_script(clone, "-b", "-o", "old.tgz", "old-s0")  # relative to where the script was started
    assert members(clone.parent / "old.tgz") == {f"{RUNS}/old-s0/metrics.json", f"{RUNS}/old-s0/model.pt"}
    assert len(worker_calls(clone)) == 1  # -b trains nothing

    with tarfile.open(clone.parent / "first.tgz") as archive:  # unpacked in another clone: the same paths
        archive.extractall(clone.parent / "home", filter="data")
    assert (clone.parent / "home" / RUNS / "a-s0" / "model.pt").read_text() == "model\n"


@pytest.mark.parametrize("args, message", [
    (["-p", "ci"], "the ci profile keeps no runs to bring back"),
    (["-w", "0"], "-w needs a positive whole number"),
    (["-H", "two"], "-H needs a number of hours"),
    (["-b", "nothing-s0"], "no finished run to pack"),
    (["-x"], "usage"),
])
def test_bad_requests_are_refused_with_a_reason(clone, args, message):
    done = run_script(clone, *args, check=False)
    assert done.returncode != 0 and message in done.stdout + done.stderr


def test_run_folders_outside_the_repository_are_refused(clone, tmp_path):
    env_runs = tmp_path / "elsewhere"
    done = subprocess.run(["bash", str(clone / "scripts" / SCRIPT.name), "-b"], capture_output=True, text=True,
                          env=os.environ | {"PYTHON": str(tmp_path / "bin" / "python"), "RUNS_DIR": str(env_runs),
                                            "CALLS": str(tmp_path / "calls.txt")}, timeout=60)
    assert done.returncode == 1 and "outside the repository" in done.stderr


def test_the_study_command_accepts_the_workers_arguments(clone, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(semi_drdnet, "runs_root", lambda profile, *_, **__: tmp_path / "runs")  # --list only reads them
    ids = [spec.run_id for spec in semi_drdnet.study_queue("gpu")[:2]]
    run_script(clone, "-w", "1", "-H", "2", "-o", str(clone.parent / "b.tgz"), *ids)
    argv = worker_calls(clone)[0].split()[3:]  # after "CUDA_VISIBLE_DEVICES= -m <module>"
    assert semi_drdnet.main([*argv, "--list"]) == 0  # parses --profile, --budget-hours and --only as given
    listed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert listed == ids


@pytest.mark.slow
def test_list_runs_the_real_study_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RUNS_DIR"} | {"PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), "-p", "cpu", "-l", "not-a-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not in the cpu study queue (see --list): not-a-run" in done.stderr
