"""Rainmer's supplement Fig. 2 and Fig. 3 from the study's runs, each qualitative claim as a measured yes/no,
and the transfer test (notebook ``30_rainmer_representations``).

Everything is drawn from the runs' ``embeddings.npz`` (:mod:`derainlib.experiments.rainmer_runs`). The
claims (:data:`CLAIMS`) are the supplement's sentences about Fig. 2 and Fig. 3, each turned into a rule on a
number (:func:`claim_table`):

- "X is isolated" ⇔ X's share of own-dataset points among each point's 10 nearest neighbours is at least 0.5
  (:func:`derainlib.analysis.rainmer.own_neighbour_share`); "mixed" is its negation;
- "negative (positive) relationship" ⇔ the whole 95 % bootstrap interval of every named relationship score is
  below (above) zero;
- "less compact" ⇔ a lower silhouette score.

A claim holds for the study when it holds for every seed; the table says for how many it does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..analysis import rainmer as analysis
from ..profiles import Profile, get_profile
from .rainmer_runs import CONTROLS, EMBEDDINGS, UNTRAINED, RunSpec, domains

ISOLATED = 0.5  # own-neighbour share at and above which a dataset counts as isolated
LEARNED = "C.1"  # the claim that the training learned anything (checked against the controls themselves)

PAPER_NAMES = {"rain200h": "Rain200H", "rain800": "Rain800", "realproxy": "GT-Rain*", "night": "GTAV*",
               "rain200l": "Rain200L", "snow": "Snow*", "raincityscapes": "Rain*", "raindrop": "RainDrop*"}


def display_name(domain: str) -> str:
    """The paper's name of a domain (``*``: our rendered stand-in for a dataset of another kind)."""
    if domain.startswith("ddn") and domain[3:].isdigit():
        return f"DDN_{domain[3:]}"
    return PAPER_NAMES.get(domain, domain)


@dataclass
class RunSpaces:
    """One run's embeddings restricted to its training domains, with the numbers the claims read."""

    spec: RunSpec
    order: list[str]
    table: analysis.EmbeddingTable  # the training domains' embeddings
    full: analysis.EmbeddingTable  # every embedded domain's (Fig. 2 runs: Rain200L too, for the transfer test)

    def vectors(self, space: str) -> np.ndarray:
        return self.table.spaces[space]

    def matrix(self, space: str) -> pd.DataFrame:
        return analysis.relationship_matrix(self.vectors(space), self.table.labels, self.order)


def untrained_view(run: RunSpaces) -> RunSpaces | None:
    """The run as its untrained control: each learned space replaced by the same encoder's at the weights its
    training starts from (``controls.npz``), under the learned space's name, so that every claim's rule reads
    it unchanged. ``None`` for a run without controls."""
    def swap(table: analysis.EmbeddingTable) -> analysis.EmbeddingTable:
        spaces = {name.removeprefix(UNTRAINED): vectors for name, vectors in table.spaces.items()
                  if name.startswith(UNTRAINED)}
        return analysis.EmbeddingTable(table.labels, table.names, spaces)

    if not any(name.startswith(UNTRAINED) for name in run.table.spaces):
        return None
    return RunSpaces(run.spec, run.order, swap(run.table), swap(run.full))


def load_run(spec: RunSpec, run_dir: Path, profile: str | Profile) -> RunSpaces:
    """A run's embeddings, with its controls' spaces (``controls.npz``) when it has them."""
    order = list(domains(spec.domain_set, profile))
    full = analysis.load_embeddings(Path(run_dir) / EMBEDDINGS)
    controls = Path(run_dir) / CONTROLS
    if controls.is_file():
        extra = analysis.load_embeddings(controls)
        if list(extra.names) != list(full.names) or list(extra.labels) != list(full.labels):
            raise ValueError(f"{controls}: embeds other images than {EMBEDDINGS}; delete it and rerun --controls")
        full = analysis.EmbeddingTable(full.labels, full.names, full.spaces | extra.spaces)
    return RunSpaces(spec, order, analysis.subset(full, order), full)


# ----------------------------------------------------------------------------- figures


def _sphere_panel(ax, run: RunSpaces, space: str, title: str, n_epochs: int | None) -> None:
    coords = analysis.spherical_umap(run.vectors(space), n_epochs=n_epochs)
    coords["dataset"] = [display_name(label) for label in run.table.labels]
    sns.scatterplot(data=coords, x="longitude", y="latitude", hue="dataset", s=10, linewidth=0, ax=ax,
                    hue_order=[display_name(d) for d in run.order])
    ax.set(xlim=(-180, 180), ylim=(-90, 90), title=title, xlabel="longitude (°)", ylabel="latitude (°)")
    ax.legend(fontsize=7, markerscale=1.5, loc="lower left")


def _matrix_panel(ax, run: RunSpaces, space: str, title: str) -> None:
    matrix = run.matrix(space)
    names = [display_name(d) for d in matrix.index]
    sns.heatmap(pd.DataFrame(matrix.to_numpy(), index=names, columns=names), ax=ax, annot=True, fmt=".2f",
                cmap="RdBu_r", center=0, vmin=-1, vmax=1, cbar=False, annot_kws={"fontsize": 7})
    ax.set_title(title)


def figure2(rainmer: RunSpaces, airnet: RunSpaces, *, n_epochs: int | None = None) -> plt.Figure:
    """Supplement Fig. 2: (a) chromatic, (b) degradation and (c) AirNet UMAPs; (d)-(f) their relationship matrices."""
    fig, axes = plt.subplots(2, 3, figsize=(16, 10))
    panels = [(rainmer, "chromatic", "chromatic"), (rainmer, "degradation", "detail/degradation"),
              (airnet, "degradation", "AirNet")]
    for column, (run, space, name) in enumerate(panels):
        _sphere_panel(axes[0, column], run, space, f"({'abc'[column]}) {name}", n_epochs)
        _matrix_panel(axes[1, column], run, space, f"({'def'[column]}) {name}")
    fig.tight_layout()
    return fig


def figure3(rainmer: RunSpaces, *, n_epochs: int | None = None) -> plt.Figure:
    """Supplement Fig. 3: chromatic and degradation UMAPs (a, b) and relationship matrices (c, d) of snow, rain
    and raindrop."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 10))
    for column, space in enumerate(("chromatic", "degradation")):
        _sphere_panel(axes[0, column], rainmer, space, f"({'ab'[column]}) {space}", n_epochs)
        _matrix_panel(axes[1, column], rainmer, space, f"({'cd'[column]}) {space}")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- numbers


def space_numbers(runs: Sequence[RunSpaces]) -> pd.DataFrame:
    """Silhouette, k-NN accuracy (chance: 1 / datasets) and each dataset's own-neighbour share, per run and space."""
    rows = []
    for run in runs:
        for space in run.table.spaces:
            vectors, labels = run.vectors(space), run.table.labels
            share = analysis.own_neighbour_share(vectors, labels)
            rows.append({"run": run.spec.run_id, "encoder": run.spec.encoder, "domains": run.spec.domain_set,
                         "seed": run.spec.seed, "space": space, "silhouette": analysis.silhouette(vectors, labels),
                         "knn_accuracy": analysis.knn_accuracy(vectors, labels), "chance": 1 / len(run.order),
                         **{f"own_{display_name(d)}": float(share[d]) for d in run.order}})
    return pd.DataFrame(rows)


def finished_numbers(runs: dict[RunSpec, Path], profile: str | Profile) -> pd.DataFrame:
    """:func:`space_numbers` of every finished run, whether or not its seed has all three (a study in progress)."""
    return space_numbers([load_run(spec, folder, profile) for spec, folder in runs.items()])


def against_controls(numbers: pd.DataFrame) -> pd.DataFrame:
    """Each learned space of :func:`space_numbers` beside its run's controls: the same encoder untrained and the
    twelve image statistics. ``beats controls`` is "yes" when its k-NN accuracy and its silhouette are both
    above both controls', "no" otherwise; rows of runs without controls say "no controls"."""
    rows = []
    for run_id, run in numbers.groupby("run", sort=False):
        by_space = run.set_index("space")
        for space in [s for s in by_space.index if s != "statistics" and not s.startswith(UNTRAINED)]:
            row = {"run": run_id, "space": space}
            controls = {"untrained": UNTRAINED + space, "statistics": "statistics"}
            for name in ("knn_accuracy", "silhouette"):
                row[name] = by_space.loc[space, name]
                for label, control in controls.items():
                    row[f"{name} {label}"] = by_space.loc[control, name] if control in by_space.index else np.nan
            have = all(control in by_space.index for control in controls.values())
            beats = all(row[name] > row[f"{name} {label}"] for name in ("knn_accuracy", "silhouette")
                        for label in controls)
            row["beats controls"] = ("yes" if beats else "no") if have else "no controls"
            rows.append(row)
    return pd.DataFrame(rows)


def relationship_intervals(run: RunSpaces, space: str, resamples: int) -> pd.DataFrame:
    table = analysis.bootstrap_relationships(run.vectors(space), run.table.labels, run.order,
                                             resamples=resamples, seed=run.spec.seed)
    return table.assign(encoder=run.spec.encoder, space=space, seed=run.spec.seed)


@dataclass(frozen=True)
class Claim:
    """A sentence of the supplement, and the rule that measures it on one seed's runs (``check`` returns
    ``(holds, the numbers behind it)``)."""

    figure: str
    text: str
    rule: str
    check: Callable[[dict[str, RunSpaces], int], tuple[bool, str]]


def _isolated(run: RunSpaces, space: str, domain: str) -> float:
    return float(analysis.own_neighbour_share(run.vectors(space), run.table.labels)[domain])


def _signs(run: RunSpaces, space: str, pairs: list[tuple[str, str]], sign: int, resamples: int) -> tuple[bool, str]:
    table = analysis.bootstrap_relationships(run.vectors(space), run.table.labels, run.order, resamples=resamples,
                                             seed=run.spec.seed)
    by_pair = {(row.a, row.b): row for row in table.itertuples()} | {(row.b, row.a): row for row in table.itertuples()}
    rows = [by_pair[pair] for pair in pairs]
    holds = all(row.high < 0 for row in rows) if sign < 0 else all(row.low > 0 for row in rows)
    shown = "; ".join(f"{display_name(a)}-{display_name(b)} {r.score:+.2f} [{r.low:+.2f}, {r.high:+.2f}]"
                      for (a, b), r in zip(pairs, rows))
    return holds, shown


def claims(profile: str | Profile, resamples: int) -> list[Claim]:
    """The supplement's qualitative claims about Fig. 2 and Fig. 3 (App. C), with our rules."""
    rain200h, rain800, light, thick, real, night = domains("fig2", profile)
    synthetic = [rain200h, rain800, light, thick]
    fig2 = [rain200h, rain800, light, thick, real, night]

    def isolated(key: str, space: str, names: list[str], want: bool):
        def check(runs: dict[str, RunSpaces], _seed: int) -> tuple[bool, str]:
            shares = {name: _isolated(runs[key], space, name) for name in names}
            holds = all((share >= ISOLATED) == want for share in shares.values())
            return holds, ", ".join(f"{display_name(n)} own share {s:.2f}" for n, s in shares.items())
        return check

    def signs(key: str, space: str, pairs: list[tuple[str, str]], sign: int):
        return lambda runs, _seed: _signs(runs[key], space, pairs, sign, resamples)

    def compact(runs: dict[str, RunSpaces], _seed: int) -> tuple[bool, str]:
        ours = analysis.silhouette(runs["rainmer-fig2"].vectors("degradation"), runs["rainmer-fig2"].table.labels)
        theirs = analysis.silhouette(runs["airnet-fig2"].vectors("degradation"), runs["airnet-fig2"].table.labels)
        return theirs < ours, f"silhouette AirNet {theirs:.3f}, Rainmer degradation {ours:.3f}"

    def others(x: str, among: list[str]) -> list[tuple[str, str]]:
        return [(x, o) for o in among if o != x]

    def all_pairs(among: list[str]) -> list[tuple[str, str]]:
        return [(a, b) for i, a in enumerate(among) for b in among[i + 1:]]

    def learned(runs: dict[str, RunSpaces], _seed: int) -> tuple[bool, str]:
        table = against_controls(space_numbers([runs["rainmer-fig2"]]))
        shown = "; ".join(f"{r['space']} k-NN {r['knn_accuracy']:.2f} (untrained {r['knn_accuracy untrained']:.2f}, "
                          f"statistics {r['knn_accuracy statistics']:.2f}), silhouette {r['silhouette']:+.3f} "
                          f"(untrained {r['silhouette untrained']:+.3f}, statistics {r['silhouette statistics']:+.3f})"
                          for r in table.to_dict("records"))
        return bool((table["beats controls"] == "yes").all()), shown

    fig3 = list(domains("fig3", profile))
    share = f"own-neighbour share ≥ {ISOLATED}"
    return [
        Claim(LEARNED, "the contrastive training learned chromatic and degradation representations of the datasets",
              "each space's k-NN accuracy and silhouette above both controls' (untrained encoder, image statistics)",
              learned),
        Claim("2a", "chromatic space: GT-Rain and GTAV-balance are isolated from the synthetic datasets",
              share, isolated("rainmer-fig2", "chromatic", [real, night], True)),
        Claim("2b", "degradation space: Rain200H and GT-Rain are nearly isolated from the other datasets",
              share, isolated("rainmer-fig2", "degradation", [rain200h, real], True)),
        Claim("2c", "AirNet's space is less compact than Rainmer's degradation space",
              "silhouette AirNet < Rainmer degradation", compact),
        Claim("2c", "AirNet mixes Rain200H with the other datasets", f"Rain200H own-neighbour share < {ISOLATED}",
              isolated("airnet-fig2", "degradation", [rain200h], False)),
        Claim("2d", "chromatic: GTAV-balance has negative relationships with the other datasets",
              "95% CI below 0 for every pair", signs("rainmer-fig2", "chromatic", others(night, fig2), -1)),
        Claim("2d", "chromatic: the other (daytime) datasets all relate positively",
              "95% CI above 0 for every pair", signs("rainmer-fig2", "chromatic", all_pairs(synthetic + [real]), 1)),
        Claim("2e", "degradation: Rain200H has negative relationships with the other datasets",
              "95% CI below 0 for every pair", signs("rainmer-fig2", "degradation", others(rain200h, fig2), -1)),
        Claim("2e", "degradation: the remaining datasets relate positively (cooperation)",
              "95% CI above 0 for every pair",
              signs("rainmer-fig2", "degradation", all_pairs([d for d in fig2 if d != rain200h]), 1)),
        Claim("2f", "AirNet: GT-Rain / GTAV-balance conflict (negative) with the synthetic datasets",
              "95% CI below 0 for every pair",
              signs("airnet-fig2", "degradation", [(x, s) for x in (real, night) for s in synthetic], -1)),
        Claim("3a,c", "chromatic: snow, rain and raindrop relate positively", "95% CI above 0 for every pair",
              signs("rainmer-fig3", "chromatic", all_pairs(fig3), 1)),
        Claim("3b,d", "degradation: snow, rain and raindrop relate negatively", "95% CI below 0 for every pair",
              signs("rainmer-fig3", "degradation", all_pairs(fig3), -1)),
    ]


def runs_by_seed(runs: dict[RunSpec, Path], profile: str | Profile) -> dict[int, dict[str, RunSpaces]]:
    """The runs of every seed that has all three (Rainmer Fig. 2, AirNet Fig. 2, Rainmer Fig. 3), keyed
    ``"<encoder>-<domain set>"``."""
    by_seed: dict[int, dict[str, RunSpaces]] = {}
    for spec, folder in runs.items():
        if spec.temperature is not None:  # a sensitivity run: in the numbers, not in the figures and claims
            continue
        by_seed.setdefault(spec.seed, {})[f"{spec.encoder}-{spec.domain_set}"] = load_run(spec, folder, profile)
    return {seed: found for seed, found in sorted(by_seed.items())
            if {"rainmer-fig2", "airnet-fig2", "rainmer-fig3"} <= set(found)}


def claim_table(by_seed: dict[int, dict[str, RunSpaces]], profile: str | Profile, *,
                verdicts: bool = True) -> pd.DataFrame:
    """Each claim beside what we measure: the rule, the numbers of every seed, how many seeds it holds for and
    (``verdicts``) the yes/no: yes when it holds for every seed.

    Each picture claim is also checked on the untrained control (:func:`untrained_view`, the seeds whose runs
    all have controls): a claim that holds there too describes the architecture and the data, not what the
    contrastive training learned. Claim C.1 compares the two already, so it has no such check."""
    p = get_profile(profile)
    untrained = {seed: {key: untrained_view(run) for key, run in runs.items()} for seed, runs in by_seed.items()}
    untrained = {seed: runs for seed, runs in untrained.items() if all(run is not None for run in runs.values())}
    rows = []
    for claim in claims(p, p.rainmer.bootstrap):
        results = {seed: claim.check(runs, seed) for seed, runs in by_seed.items()}
        row = {"figure": claim.figure, "claim (supplement)": claim.text, "rule": claim.rule,
               "measured": _per_seed(results)}
        control = {} if claim.figure == LEARNED else {seed: claim.check(runs, seed) for seed, runs in untrained.items()}
        row["measured untrained"] = _per_seed(control) if control else "—"
        if verdicts:
            held = sum(holds for holds, _ in results.values())
            row |= {"seeds holding": f"{held}/{len(results)}", "holds": "yes" if held == len(results) else "no",
                    "untrained seeds holding": (f"{sum(holds for holds, _ in control.values())}/{len(control)}"
                                                if control else "—")}
        rows.append(row)
    return pd.DataFrame(rows)


def _per_seed(results: dict[int, tuple[bool, str]]) -> str:
    return " | ".join(f"seed {seed}: {numbers}" for seed, (_, numbers) in results.items())


def transfer_table(by_seed: dict[int, dict[str, RunSpaces]], transfer: pd.DataFrame,
                   measures: Sequence[str] = ("psnr_y", "gain_y")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The transfer test: for each space (Rainmer chromatic, degradation, AirNet) and transfer measure, the rank
    correlation between the relationship score (averaged over seeds, Rain200L embedded too) and the
    cross-domain PSNR. Returns ``(correlations, the pairs behind them)``."""
    matrices: dict[str, list[pd.DataFrame]] = {}
    for runs in by_seed.values():
        for key, space in (("rainmer-fig2", "chromatic"), ("rainmer-fig2", "degradation"), ("airnet-fig2", "degradation")):
            run = runs[key]
            full = run.full
            order = list(dict.fromkeys(full.labels))
            name = "AirNet" if key.startswith("airnet") else f"Rainmer {space}"
            matrices.setdefault(name, []).append(analysis.relationship_matrix(full.spaces[space], full.labels, order))
    correlations, pairs = [], []
    for name, found in matrices.items():
        relationship = sum(found) / len(found)
        for measure in measures:
            table = analysis.transfer_pairs(relationship, transfer, measure)
            pairs.append(table.assign(space=name, measure=measure).rename(columns={measure: "transfer"}))
            correlations.append({"space": name, "transfer measure": measure,
                                 **analysis.rank_correlation(table["relationship"], table[measure])})
    return pd.DataFrame(correlations), pd.concat(pairs, ignore_index=True)


# ----------------------------------------------------------------------------- what the notebook shows


@dataclass
class Report:
    figure2: plt.Figure
    figure3: plt.Figure
    numbers: pd.DataFrame  # silhouette, k-NN accuracy, own-neighbour shares per run and space (controls too)
    controls: pd.DataFrame  # each learned space beside its run's controls (against_controls)
    claims: pd.DataFrame
    correlations: pd.DataFrame | None  # the transfer test (None without a transfer table)
    pairs: pd.DataFrame | None


def report(runs: dict[RunSpec, Path], profile: str | Profile, transfer: pd.DataFrame | None, *,
           verdicts: bool) -> Report:
    """Fig. 2 and Fig. 3 (from the lowest seed), the numbers of every run (those of seeds without all three
    runs and the sensitivity run too), the claims (with yes/no when
    ``verdicts``) and the transfer test's rank correlations, from the runs' embeddings."""
    p = get_profile(profile)
    by_seed = runs_by_seed(runs, p)
    if not by_seed:
        raise ValueError("no seed has all three runs (Rainmer Fig. 2, AirNet Fig. 2, Rainmer Fig. 3)")
    first = by_seed[min(by_seed)]
    n_epochs = p.rainmer.umap_epochs
    figure_2 = figure2(first["rainmer-fig2"], first["airnet-fig2"], n_epochs=n_epochs)
    figure_3 = figure3(first["rainmer-fig3"], n_epochs=n_epochs)
    numbers = finished_numbers(runs, p)  # every run, the sensitivity run too
    claim_rows = claim_table(by_seed, p, verdicts=verdicts)
    correlations = pairs = None
    if transfer is not None:
        correlations, pairs = transfer_table(by_seed, transfer)
    return Report(figure_2, figure_3, numbers, against_controls(numbers), claim_rows, correlations, pairs)
