"""The notebook runner: outputs move into place only after a notebook succeeds."""

from __future__ import annotations

import json

import nbformat
import pytest
import torch

from derainlib import reproduce
from derainlib.reporting import save_figure, save_table, to_markdown

PARAMETERS = 'profile = "ci"\noutput_dir = None'
WRITE_OUTPUTS = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from derainlib.reporting import save_figure, save_table
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0])
save_figure(fig, "demo", output_dir)
save_table(pd.DataFrame({"profile": [profile], "value": [1.5]}), "demo", output_dir)
"""
STUDY_FIGURE = """
from derainlib.reporting import save_study_figure
save_study_figure(fig, "study_demo", output_dir)
"""
SHOW_ENV = """
import os
print("update", os.environ.get("DERAINLIB_UPDATE_REFERENCE"))
"""


def make_notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_code_cell(PARAMETERS)] + [nbformat.v4.new_code_cell(s) for s in sources]
    cells[0].metadata["tags"] = ["parameters"]
    notebook.cells = cells
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def dirs(tmp_path):
    return {"build_dir": tmp_path / "build", "figures_dir": tmp_path / "figures", "results_dir": tmp_path / "results"}


@pytest.mark.slow
def test_successful_run_moves_outputs_into_profile_folders(tmp_path, dirs):
    notebook = make_notebook(tmp_path / "01_ok.ipynb", WRITE_OUTPUTS)
    outputs = reproduce.run_notebook(notebook, "cpu", **dirs)
    assert sorted(p.name for p in outputs["figures"]) == ["demo.pdf", "demo.png"]
    assert (dirs["results_dir"] / "cpu" / "demo.csv").read_text().splitlines()[1] == "cpu,1.5"
    assert (dirs["build_dir"] / "cpu" / "01_ok.ipynb").is_file()
    record = json.loads((dirs["results_dir"] / "cpu" / "01_ok.provenance.json").read_text())
    assert record["profile"] == "cpu" and record["parameters"] == {"profile": "cpu"}
    assert record["wall_time_s"] > 0 and record["machine"]["cpus"] >= 1 and record["commit"]
    assert not [p for p in dirs["build_dir"].iterdir() if ".staging-" in p.name]


@pytest.mark.slow
def test_failed_run_overwrites_nothing(tmp_path, dirs):
    (dirs["figures_dir"] / "ci").mkdir(parents=True)
    committed = dirs["figures_dir"] / "ci" / "demo.png"
    committed.write_bytes(b"committed figure")
    notebook = make_notebook(tmp_path / "02_fails.ipynb", WRITE_OUTPUTS, "raise RuntimeError('boom')")
    before = notebook.read_bytes()
    with pytest.raises(reproduce.NotebookFailed, match="02_fails.ipynb.*RuntimeError: boom"):
        reproduce.run_notebook(notebook, "ci", **dirs)
    assert committed.read_bytes() == b"committed figure"
    assert notebook.read_bytes() == before
    assert not (dirs["results_dir"] / "ci" / "demo.csv").exists()
    assert not (dirs["build_dir"] / "ci").exists()


def test_update_committed_replaces_only_on_success(tmp_path):
    good = make_notebook(tmp_path / "03_good.ipynb", "print(1 + 1)")
    reproduce.update_committed(good)
    executed = nbformat.read(good, as_version=4)
    assert executed.cells[1].outputs[0].text == "2\n"
    assert "papermill" not in executed["metadata"]  # per-run metadata is stripped
    bad = make_notebook(tmp_path / "04_bad.ipynb", "1 / 0")
    before = bad.read_bytes()
    with pytest.raises(reproduce.NotebookFailed, match="ZeroDivisionError"):
        reproduce.update_committed(bad)
    assert bad.read_bytes() == before


def test_main_reports_failure_with_exit_code(tmp_path, monkeypatch, capsys):
    bad = make_notebook(tmp_path / "05_bad.ipynb", "1 / 0")
    monkeypatch.setattr(reproduce, "run_notebook", lambda *a, **k: (_ for _ in ()).throw(reproduce.NotebookFailed("x")))
    assert reproduce.main([str(bad)]) == 1
    assert "Nothing of this run was moved into place" in capsys.readouterr().err


def test_numbered_notebooks_are_in_number_order(tmp_path):
    for name in ("10_b.ipynb", "00_a.ipynb", "notes.ipynb", "02_c.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in reproduce.numbered_notebooks(tmp_path)] == ["00_a.ipynb", "02_c.ipynb", "10_b.ipynb"]


def test_saving_is_off_without_output_dir_and_deterministic_with_it(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, ax = plt.subplots()
    ax.imshow([[0, 1], [1, 0]])
    assert save_figure(fig, "x", None) == [] and save_table(pd.DataFrame({"a": [1]}), "x", None) == []
    first = [p.read_bytes() for p in save_figure(fig, "x", tmp_path / "a")]
    second = [p.read_bytes() for p in save_figure(fig, "x", tmp_path / "b")]
    assert first == second


def test_markdown_table():
    import pandas as pd

    text = to_markdown(pd.DataFrame({"domain": ["rain200h"], "psnr": [29.12345]}))
    assert text == "| domain | psnr |\n|---|---|\n| rain200h | 29.123 |\n"


def test_provenance_ignores_changed_outputs_but_not_changed_code(tmp_path, monkeypatch):
    import derainlib.provenance as provenance_module
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "t.csv").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(provenance_module, "REPO_ROOT", tmp_path)
    (tmp_path / "results" / "t.csv").write_text("b\n")
    assert not reproduce.provenance("ci", {}, 1.0)["commit"].endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert reproduce.provenance("ci", {}, 1.0)["commit"].endswith("-dirty")


def test_provenance_outside_git_takes_the_commit_it_is_told_and_names_the_gpu(tmp_path, monkeypatch):
    import derainlib.provenance as provenance_module

    monkeypatch.setattr(provenance_module, "REPO_ROOT", tmp_path)  # no .git here
    monkeypatch.delenv("DERAINLIB_COMMIT", raising=False)
    assert provenance_module.provenance("ci", {}, 1.0)["commit"] == "unknown"
    monkeypatch.setenv("DERAINLIB_COMMIT", "abc123")
    assert provenance_module.provenance("ci", {}, 1.0)["commit"] == "abc123"
    assert provenance_module.machine_label({"processor": "EPYC", "cuda": None}) == "EPYC"
    assert provenance_module.machine_label({"processor": "EPYC", "cuda": "NVIDIA H100"}) == "EPYC + NVIDIA H100"


def test_provenance_names_the_cpus_capability_which_says_whether_bf16_is_native(monkeypatch):
    import derainlib.provenance as provenance_module

    capability = provenance_module.provenance("ci", {}, 1.0)["machine"]["cpu_capability"]
    assert capability.split("+")[0] == torch.backends.cpu.get_cpu_capability()
    assert capability.endswith("+bf16") == provenance_module.cpu_has_native_bf16()
    monkeypatch.setattr(provenance_module, "cpu_has_native_bf16", lambda: True)
    assert provenance_module.cpu_capability().endswith("+bf16")
    machine = {"processor": "EPYC", "cpu_capability": "AVX2", "cuda": None}
    assert provenance_module.machine_label(machine) == "EPYC (AVX2)"  # older records have no capability: above


def test_a_ci_run_checks_against_the_reference_and_leaves_it_alone(tmp_path, dirs, monkeypatch):
    """`make reproduce` (ci) used to overwrite figures/ci and results/ci, the reference it should be checked against."""
    dirs["check_dir"] = tmp_path / "check"
    notebook = make_notebook(tmp_path / "06_ci.ipynb", WRITE_OUTPUTS + STUDY_FIGURE, SHOW_ENV)
    outputs = reproduce.run_notebook(notebook, "ci", **dirs)
    assert not (dirs["results_dir"] / "ci").exists() and not (dirs["figures_dir"] / "ci").exists()
    assert (dirs["check_dir"] / "ci" / "results" / "demo.csv").is_file()
    assert (dirs["check_dir"] / "ci" / "figures" / "demo.png").is_file()
    assert sorted(p.name for p in outputs["study figures"]) == ["study_demo.pdf", "study_demo.png"]
    assert (dirs["figures_dir"] / "study" / "study_demo.png").is_file()
    executed = nbformat.read(outputs["notebook"][0], as_version=4)
    assert executed.cells[-1].outputs[0].text == "update None\n"  # the kernel's checks compare

    monkeypatch.setenv("DERAINLIB_UPDATE_REFERENCE", "1")  # a stray variable does not turn the checks off
    outputs = reproduce.run_notebook(notebook, "ci", **dirs)
    assert nbformat.read(outputs["notebook"][0], as_version=4).cells[-1].outputs[0].text == "update None\n"

    outputs = reproduce.run_notebook(notebook, "ci", update_reference=True, **dirs)
    assert (dirs["results_dir"] / "ci" / "demo.csv").is_file() and (dirs["figures_dir"] / "ci" / "demo.png").is_file()
    assert nbformat.read(outputs["notebook"][0], as_version=4).cells[-1].outputs[0].text == "update 1\n"
    with pytest.raises(ValueError, match="only the ci profile"):
        reproduce.run_notebook(notebook, "cpu", update_reference=True, **dirs)


def test_update_reference_is_refused_for_other_profiles(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["--profile", "cpu", "--update-reference"])
    assert "--update-reference goes with --profile ci only" in capsys.readouterr().err


def test_update_committed_writes_the_kernelspec_jupyterlab_finds(tmp_path):
    """The committed notebooks said "Python 3"; JupyterLab's kernel, "Python 3 (ipykernel)", marked them modified."""
    from ipykernel.kernelspec import get_kernel_dict

    notebook = make_notebook(tmp_path / "07_kernel.ipynb", "print(1)")
    reproduce.update_committed(notebook)
    kernelspec = nbformat.read(notebook, as_version=4).metadata["kernelspec"]
    assert kernelspec == {"display_name": get_kernel_dict()["display_name"], "language": "python", "name": "python3"}
    assert kernelspec["display_name"] == "Python 3 (ipykernel)"


def test_committed_notebooks_name_the_kernel_and_hold_no_machine_paths():
    """Notebook 11 saved a random temporary runs folder in an output: no output may depend on the machine."""
    import re
    import tempfile

    from derainlib import REPO_ROOT

    machine_paths = re.compile("|".join(re.escape(p) for p in {tempfile.gettempdir(), "/tmp/", str(REPO_ROOT)})
                               + r"|derainlib-ci-runs-|\.staging-")
    notebooks = reproduce.numbered_notebooks()
    assert notebooks
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        assert notebook.metadata["kernelspec"] == reproduce.KERNELSPEC, path.name
        for index, cell in enumerate(notebook.cells):
            for output in cell.get("outputs", []):
                text = output.get("text", "") + "".join(
                    value for key, value in output.get("data", {}).items() if key.startswith("text/"))
                found = machine_paths.search(text)
                assert found is None, f"{path.name}, cell {index}: an output holds {found.group(0)!r}"
