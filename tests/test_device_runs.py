"""scripts/device_runs.sh: what a lent GPU machine's runs bring back through $OUT."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from derainlib import REPO_ROOT


def test_packs_finished_runs_without_checkpoints_and_unfinished_ones_in_parts(tmp_path):
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "metrics.json").write_text("{}")
    (runs / "a" / "model.pt").write_bytes(b"model")
    (runs / "a" / "checkpoint.pt").write_bytes(b"stale")
    (runs / "b").mkdir()
    (runs / "b" / "checkpoint.pt").write_bytes(os.urandom(1000))
    (runs / "b" / "running.lock").touch()
    out = tmp_path / "out"
    env = os.environ | {"OUT": str(out), "RUNS_DIR": str(runs), "PYTHON": sys.executable}
    # The ids are not in the study queue, so each training process stops at once with an error.
    subprocess.run(["bash", "scripts/device_runs.sh", "ci", "100", "a", "b"], cwd=REPO_ROOT, env=env,
                   check=True, capture_output=True, timeout=240)

    with tarfile.open(out / "finished.tgz") as archive:
        finished = {Path(name).name for name in archive.getnames() if Path(name).parent.name == "a"}
    assert finished == {"metrics.json", "model.pt"}
    parts = sorted(out.glob("unfinished.tgz.part-*"))
    joined = tmp_path / "unfinished.tgz"
    joined.write_bytes(b"".join(part.read_bytes() for part in parts))
    with tarfile.open(joined) as archive:
        unfinished = {Path(name).name for name in archive.getnames() if Path(name).parent.name == "b"}
    assert unfinished == {"checkpoint.pt"}
    assert "finished: 1, unfinished: 1" in (out / "job.log").read_text()
