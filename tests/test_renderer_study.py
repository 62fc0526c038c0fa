"""renderer_study's table and writer: the flat old-against-new table, and what write_comparison saves."""

from __future__ import annotations

import dataclasses

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from derainlib.experiments import renderer_study  # noqa: E402
from derainlib.profiles import PROFILES, get_profile  # noqa: E402

DOMAINS = ("rain200l", "snow")


@pytest.fixture(scope="module")
def rows():
    photos = renderer_study.study_photos(2, 64)
    return renderer_study.statistics_rows(photos, domains=DOMAINS, with_niqe=False)


def test_versions_table_is_flat_one_row_per_domain_and_version(rows):
    table = renderer_study.versions_table(rows)
    assert list(table.columns[:2]) == ["domain", "version"]
    assert list(zip(table["domain"], table["version"])) == [("rain200l", 1), ("rain200l", 2), ("snow", 1), ("snow", 2)]
    # The means of the per-photo rows, and the same range check from either.
    expected = rows[(rows["domain"] == "snow") & (rows["version"] == 2)]["coverage"].mean()
    assert table.loc[(table["domain"] == "snow") & (table["version"] == 2), "coverage"].item() == pytest.approx(expected)
    assert renderer_study.check_ranges(table) == renderer_study.check_ranges(rows)


def test_check_ranges_names_a_domain_outside_its_range(rows):
    table = renderer_study.versions_table(rows)
    ranges = {"snow": {"coverage": (2.0, 3.0)}}  # coverage is a share: never inside
    (problem,) = renderer_study.check_ranges(table, ranges)
    assert problem.startswith("snow: coverage")


def test_write_comparison_saves_table_and_figures(tmp_path):
    tiny = dataclasses.replace(get_profile("ci"), renderer_photos=1, renderer_size=64)
    comparison = renderer_study.write_comparison(tiny, tmp_path, domains=DOMAINS, with_niqe=False)
    assert (comparison.photos, comparison.size) == (1, 64)
    saved = pd.read_csv(tmp_path / "results" / f"{renderer_study.TABLE_NAME}.csv")
    assert saved.shape == comparison.table.shape and len(saved) == 2 * len(DOMAINS)
    assert (tmp_path / "results" / f"{renderer_study.TABLE_NAME}.md").read_text().startswith("| domain | version |")
    for domain in DOMAINS:
        for ext in ("png", "pdf"):
            assert (tmp_path / "figures" / f"00_renderer_{domain}.{ext}").stat().st_size > 0
    assert comparison.figures == {d: tmp_path / "figures" / f"00_renderer_{d}.png" for d in DOMAINS}


def test_write_comparison_without_output_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = dataclasses.replace(get_profile("ci"), renderer_photos=1, renderer_size=48)
    comparison = renderer_study.write_comparison(tiny, None, domains=("rain200l",), with_niqe=False)
    assert comparison.figures == {} and list(tmp_path.iterdir()) == []


def test_study_figure_path_errors():
    with pytest.raises(ValueError, match="unknown domain"):
        renderer_study.study_figure_path("drizzle")
    with pytest.raises(FileNotFoundError, match="00_renderer_rain200l.png"):
        renderer_study.study_figure_path("rain200l", profile="no-such-profile")


def test_profiles_size_the_comparison():
    assert PROFILES["ci"].renderer_photos * PROFILES["ci"].renderer_size ** 2 < (
        PROFILES["cpu"].renderer_photos * PROFILES["cpu"].renderer_size ** 2)
    for profile in PROFILES.values():
        assert profile.renderer_photos >= 1 and profile.renderer_size >= 32
