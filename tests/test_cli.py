"""`derain`: every shipped model derains a photo; names never collide; bad input is named; it starts light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from derainlib import REPO_ROOT, cli, pretrained
from derainlib.data.imageio import read_image, write_image
from derainlib.data.synthetic import render
from derainlib.models import build_network
from derainlib.train import TrainConfig


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def rainy_photo(path: Path, height: int = 29, width: int = 37, seed: int = 0) -> Path:
    """A small rainy image of odd size (so a network that changed the size would show it)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    clean = np.stack([0.5 + 0.4 * np.sin(6 * x + rng.uniform(0, 6)), 0.5 + 0.4 * np.cos(5 * y),
                      0.3 + 0.4 * (x > 0.5)], axis=-1)
    clean = (np.clip(clean, 0, 1) * 255).round().astype(np.uint8)
    write_image(path, render(clean, "rain200h", seed=seed))
    return path


def test_three_synthetic_training_sets_are_shipped_and_the_default_is_one():
    assert {"rain200l", "rain200h", "rain800"} <= set(pretrained.available())
    assert pretrained.DEFAULT_MODEL in pretrained.available()


@pytest.mark.parametrize("name", pretrained.available())
def test_every_shipped_model_derains_a_photo(tmp_path, umask_022, capsys, name):
    photo = rainy_photo(tmp_path / "in" / "photo.jpg")
    assert cli.main([str(photo), str(tmp_path / "out"), "--model", name, "--device", "cpu"]) == 0
    out = tmp_path / "out" / "photo.png"
    assert out.is_file() and "wrote 1 image(s)" in capsys.readouterr().out
    derained, rainy = read_image(out), read_image(photo)
    assert derained.shape == rainy.shape
    assert np.abs(derained.astype(int) - rainy.astype(int)).mean() > 0.5  # it changed the image
    assert out.stat().st_mode & 0o777 == 0o644


def test_without_model_the_default_is_used_and_a_single_image_may_go_to_a_file(tmp_path):
    photo = rainy_photo(tmp_path / "photo.png")
    assert cli.main([str(photo), str(tmp_path / "default.png"), "--device", "cpu"]) == 0
    assert cli.main([str(photo), str(tmp_path / "named.png"), "--model", pretrained.DEFAULT_MODEL,
                     "--device", "cpu"]) == 0
    assert (tmp_path / "default.png").read_bytes() == (tmp_path / "named.png").read_bytes()


def test_a_users_own_checkpoint_still_works(tmp_path):
    torch.manual_seed(0)
    config = TrainConfig(train_root="unused", variant="BL", width=4, num_blocks=1)
    network = build_network("BL", width=4, num_blocks=1)
    torch.save({"config": config.as_dict(), "step": 0, "model": network.state_dict()}, tmp_path / "model.pt")
    rainy_photo(tmp_path / "in" / "a.png")
    assert cli.main([str(tmp_path / "in"), str(tmp_path / "out"), "--checkpoint", str(tmp_path / "model.pt"),
                     "--device", "cpu"]) == 0
    assert read_image(tmp_path / "out" / "a.png").shape == (29, 37, 3)


def test_inputs_sharing_a_stem_keep_their_full_names_and_are_reported(tmp_path, capsys):
    inputs = tmp_path / "in"
    rainy_photo(inputs / "x.png", seed=1)
    rainy_photo(inputs / "x.webp", seed=2)
    rainy_photo(inputs / "sub" / "x.jpg", seed=3)  # another folder: no clash
    assert cli.main([str(inputs), str(tmp_path / "out"), "--device", "cpu"]) == 0
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["sub/x.png", "x.png.png", "x.webp.png"]
    err = capsys.readouterr().err
    assert "name collision" in err and "x.png, x.webp" in err and "x.png.png, x.webp.png" in err
    # each output comes from its own input: the two renderings differ, so must their outputs
    assert (tmp_path / "out" / "x.png.png").read_bytes() != (tmp_path / "out" / "x.webp.png").read_bytes()


def test_no_two_planned_outputs_are_the_same_file_even_in_odd_cases(tmp_path):
    names = ["x.png", "x.webp", "x.webp.png", "X.jpg", "y.png"]  # x.webp.png is also x.webp's full-name output
    images = [tmp_path / name for name in names]
    outputs, notes = cli.plan_outputs(images, tmp_path, tmp_path / "out")
    keys = [path.as_posix().casefold() for path in outputs.values()]
    assert len(set(keys)) == len(images)  # also apart on a case-insensitive file system
    assert outputs[tmp_path / "y.png"] == tmp_path / "out" / "y.png"
    assert all(path.suffix == ".png" for path in outputs.values()) and notes


def test_a_bad_image_is_named_and_the_others_are_still_written(tmp_path, capsys):
    inputs = tmp_path / "in"
    rainy_photo(inputs / "good.png")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (inputs / "notes.txt").write_text("not an image, ignored")
    assert cli.main([str(inputs), str(tmp_path / "out"), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "wrote 1 image(s)" in captured.out
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]
    assert cli.main([str(inputs / "broken.png"), str(tmp_path / "out2"), "--device", "cpu"]) == 1
    assert "broken.png" in capsys.readouterr().err


@pytest.mark.parametrize("args, named", [
    (["missing_folder", "out"], "missing_folder: no such file or folder"),
    (["notes.txt", "out"], "notes.txt: not an image file name"),
    (["in", "out", "--model", "rain9000"], "no shipped model named 'rain9000'; shipped models: rain200h"),
    (["in", "out", "--checkpoint", "nope.pt"], "nope.pt"),
])
def test_usage_errors_name_the_problem(tmp_path, capsys, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)
    rainy_photo(tmp_path / "in" / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    assert cli.main(args) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_list_models_prints_one_line_per_model_and_marks_the_default(capsys):
    assert cli.main(["--list-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in pretrained.available():
        (line,) = [line for line in lines if line[2:].startswith(name + ":")]
        assert line.startswith("* ") == (name == pretrained.DEFAULT_MODEL)
        assert f"test {pretrained.card(name)['test']['psnr_y']:.2f}" in line


def test_help_and_list_models_import_no_model_code():
    probe = (
        "import sys\n"
        "import derainlib\n"
        "heavy_package = 'torch' in sys.modules\n"
        "from derainlib import cli\n"
        "for argv in (['--help'], ['--list-models']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'derainlib', 'pandas'))\n"
        "print('RESULT', heavy_package, ' '.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT,
                         env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, check=True).stdout
    heavy_package, *loaded = out.split("RESULT ", 1)[1].split()
    assert not {"derainlib.train", "derainlib.data", "derainlib.evaluation", "torchvision", "pandas"} & set(loaded)
    if heavy_package == "False":  # once `import derainlib` itself is light, --help must not pull torch in either
        assert "torch" not in loaded


def test_an_output_folder_inside_the_input_folder_is_not_derained_again(tmp_path, capsys):
    rainy_photo(tmp_path / "photos" / "a.png")
    for _ in range(2):
        assert cli.main([str(tmp_path / "photos"), str(tmp_path / "photos" / "derained"), "--device", "cpu"]) == 0
        assert "wrote 1 image(s)" in capsys.readouterr().out
    assert [p.relative_to(tmp_path).as_posix() for p in sorted((tmp_path / "photos").rglob("*.png"))] == [
        "photos/a.png", "photos/derained/a.png"]
