"""The embedded benchmark: layouts the loaders recognise, determinism, reuse, and atomic builds."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from derainlib.data import DatasetError, build_benchmark, detect_layout, render, split_root
from derainlib.data import benchmark as bench
from derainlib.data.photos import load_photo
from derainlib.metrics import to_uint8
from derainlib.profiles import get_profile

# Two train photos, one val, one test, 64 px: every domain and layout, in a couple of seconds.
TINY = dataclasses.replace(get_profile("ci"), name="tiny", n_train=2, n_val=1, n_test=1, image_size=64,
                           ddn_types=(1, 14))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_benchmark(tmp_path_factory.mktemp("bench") / "tiny", TINY, seed=3, workers=1, progress=False)


def test_every_domain_split_is_detected_as_its_public_layout(built):
    for domain in bench.DOMAIN_DATASETS:
        for split in bench.SPLITS:
            if domain == "realproxy" and split == "train":
                continue
            assert detect_layout(split_root(built, domain, split)) == bench.layout_of(domain), (domain, split)


def test_pairs_hold_the_resized_photo_and_its_rendering(built):
    """Read back through the loader, the clean image is the photo and the rainy one is render() of it."""
    row = bench.select_photos(TINY, "test")[0]
    clean = bench.resize_longer_side(load_photo(row["file"]), TINY.image_size)
    for domain in bench.DOMAIN_DATASETS:
        dataset = bench.open_split(built, domain, "test")
        for rain_type in bench.domain_rain_types(domain, TINY.ddn_types):
            item = bench.load_rendering(dataset, domain, "test", 0, rain_type)
            seed = bench.rendering_seed(3, domain, "test", row["sha256"], rain_type)
            expected = render(clean, domain, seed, ddn_type=rain_type if domain == "ddn" else None)
            np.testing.assert_array_equal(to_uint8(item["clean"])[0], clean)
            np.testing.assert_array_equal(to_uint8(item["rainy"])[0], expected)


def test_realproxy_training_split_is_unlabeled(built):
    train = split_root(built, "realproxy", "train")
    assert len(list((train / "input").iterdir())) == TINY.n_train
    assert not (train / "target").exists()
    assert len(bench.open_split(built, "realproxy", "train")) == TINY.n_train
    assert (split_root(built, "realproxy", "test") / "target").is_dir()


def test_counts_follow_the_profile(built):
    assert len(bench.open_split(built, "ddn", "train")) == TINY.n_train * len(TINY.ddn_types)
    assert len(bench.open_split(built, "rain200h", "val")) == TINY.n_val


def test_splits_use_disjoint_photos():
    used = {split: {row["sha256"] for row in bench.select_photos(get_profile("cpu"), split)} for split in bench.SPLITS}
    assert not (used["train"] & used["test"]) and not (used["train"] & used["val"]) and not (used["val"] & used["test"])


def test_rebuild_is_reused_and_bytes_are_reproducible(built, tmp_path):
    manifest = json.loads((built / bench.MANIFEST_NAME).read_text())
    before = (built / bench.MANIFEST_NAME).stat().st_mtime_ns
    assert build_benchmark(built, TINY, seed=3, progress=False) == built
    assert (built / bench.MANIFEST_NAME).stat().st_mtime_ns == before  # reused, not rebuilt
    # A fresh build elsewhere, with two worker processes, gives the same bytes.
    again = build_benchmark(tmp_path / "again", TINY, seed=3, workers=2, progress=False)
    assert json.loads((again / bench.MANIFEST_NAME).read_text())["files"] == manifest["files"]


def test_changed_recipe_or_damaged_file_triggers_a_rebuild(built, tmp_path):
    copy = build_benchmark(tmp_path / "copy", TINY, seed=3, workers=1, progress=False)
    assert bench.verify_benchmark(copy)
    assert not bench.verify_benchmark(copy, bench.benchmark_recipe(TINY, 4, tuple(bench.DOMAIN_DATASETS)))
    victim = split_root(copy, "rain200l", "train") / "norain" / "norain-1.png"
    victim.write_bytes(b"damaged")
    assert not bench.verify_benchmark(copy)
    build_benchmark(copy, TINY, seed=3, workers=1, progress=False)
    assert bench.verify_benchmark(copy)


def test_failed_build_leaves_the_previous_build_untouched(built, tmp_path, monkeypatch):
    good = build_benchmark(tmp_path / "good", TINY, seed=3, workers=1, progress=False)
    manifest = (good / bench.MANIFEST_NAME).read_bytes()
    calls = {"n": 0}

    def flaky_render(clean, domain, seed, *, ddn_type=None):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("renderer crashed")
        return clean

    monkeypatch.setattr(bench.synthetic, "render", flaky_render)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        build_benchmark(good, TINY, seed=4, workers=1, progress=False)  # new seed: a rebuild is needed
    assert (good / bench.MANIFEST_NAME).read_bytes() == manifest
    assert bench.verify_benchmark(good)
    assert not [p for p in good.parent.iterdir() if ".building-" in p.name]  # no staging left behind


def test_unknown_domain_and_split_are_data_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown domain 'fog'"):
        build_benchmark(tmp_path / "x", TINY, domains=("fog",), progress=False)
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        split_root(tmp_path, "rain200h", "dev")


def test_unknown_profile_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'huge'.*ci, cpu, gpu, paper"):
        build_benchmark(tmp_path / "x", "huge")


def test_staging_left_by_a_killed_build_is_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a finished process: its pid names an abandoned build
    abandoned = tmp_path / f".tiny.building-{dead.pid}-abc"
    (abandoned / "Rain200L").mkdir(parents=True)
    alive = tmp_path / f".tiny.building-{__import__('os').getpid()}-xyz"  # this process: still building
    alive.mkdir()
    build_benchmark(tmp_path / "tiny", TINY, seed=3, workers=1, progress=False)
    assert not abandoned.exists() and alive.exists()


def test_command_line_builds_and_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "get_profile", lambda name: TINY)
    bench.main(["--profile", "ci", "--root", str(tmp_path / "cli"), "--workers", "1"])
    assert "files, manifest verified" in capsys.readouterr().out
    assert bench.verify_benchmark(tmp_path / "cli")


def test_a_change_to_the_streak_building_blocks_invalidates_builds(monkeypatch):
    """The renderer is data/synthetic.py (domains) and data/streaks.py (their building blocks): both count."""
    profile = get_profile("ci")
    before = bench.benchmark_recipe(profile, 0, ("rain200h",))
    real = bench.inspect.getsource
    monkeypatch.setattr(bench.inspect, "getsource", lambda module: real(module) + ("# changed" if module is bench.streaks else ""))
    assert bench.benchmark_recipe(profile, 0, ("rain200h",))["renderer_sha256"] != before["renderer_sha256"]


def test_each_render_seed_has_its_own_default_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("DERAINLIB_DATA", str(tmp_path))
    assert bench.default_benchmark_root("ci") == tmp_path / "ci"
    assert bench.default_benchmark_root("ci", seed=3) == tmp_path / "ci-seed3"
