"""Rainmer's representation study: one run per (encoder, domain set, seed), trained, embedded and recorded.

A run is a :class:`RunSpec`: the encoder (Rainmer's, or AirNet's as the comparator), the domains it is trained
on, and the seed. The domain sets (supplement App. C):

- ``fig2``: the stand-ins for Rain200H, Rain800, DDN type 1 and type 5, GT-Rain (the real proxy) and
  GTAV-balance (night), for Fig. 2;
- ``fig3``: snow, rain and raindrop (the AllWeather subsets of Fig. 3; "rain" is the rain-and-fog domain).

Each run lives in ``<runs_root>/<run_id>/`` (``results/<profile>/rainmer/runs/`` for the committed study) and
is run by the method-neutral :mod:`derainlib.study`:

- ``log.csv`` and ``model.pt`` from :func:`derainlib.train_rainmer.train_rainmer`;
- ``embeddings.npz``: every space's embeddings of up to ``images_per_dataset`` images of each analysed domain
  (:func:`derainlib.analysis.rainmer.embed_domains`), what the notebook's figures and numbers are drawn from;
- ``controls.npz``: the same images in the controls' spaces (:func:`control_embeddings`): the run's encoder as
  it started training, and twelve image statistics that nothing learns;
- ``segments.json`` and ``metrics.json`` (the record, with the silhouette and k-NN numbers per space and per
  control space).

Sizes come from the profile's ``rainmer`` section (:class:`derainlib.profiles.RainmerSizes`).

Command line: ``python -m derainlib.experiments.rainmer_runs --profile cpu`` works through the study queue
(resumable; start it once per core to share the queue); ``--list`` prints each run's state; ``--transfer``
computes the cross-domain PSNR of the study's supervised DRD-Net models (the transfer test); ``--controls``
writes ``controls.npz`` for finished runs that predate it; ``--reproducibility RUN_ID`` trains the first steps of
a run twice, with the profile's bf16 autocast and in fp32, and writes where the two losses first differ
(:func:`reproducibility`).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from .. import distributed, study
from ..analysis import rainmer as analysis
from ..atomic import atomic_path
from ..data.benchmark import benchmark_renderer_version, build_benchmark, default_benchmark_root
from ..data.synthetic import DEFAULT_VERSION
from ..paths import results_dir
from ..options import check_choice
from ..profiles import Profile, get_profile
from ..runtime import resolve_device
from ..train_rainmer import ENCODERS, RainmerConfig, initial_networks, load_encoder, train_rainmer

METHOD = "rainmer"
RENDERER_VERSION = DEFAULT_VERSION
DOMAIN_SETS = ("fig2", "fig3")
#: The training sets of the supervised DRD-Net models the transfer test reads (Semi-DRDNet's study).
TRANSFER_TRAIN_DOMAINS = ("rain200l", "rain200h", "rain800")
EMBEDDINGS = "embeddings.npz"
CONTROLS = "controls.npz"
TRANSFER_TABLE = "transfer_psnr.csv"
UNTRAINED = "untrained "  # names the untrained control's spaces in controls.npz: "untrained chromatic", …


def domains(domain_set: str, profile: str | Profile) -> tuple[str, ...]:
    """The training domains of a domain set (the Fig. 2 DDN types come from the profile)."""
    light, thick = get_profile(profile).rainmer.ddn_types
    if domain_set == "fig2":
        return ("rain200h", "rain800", f"ddn{light}", f"ddn{thick}", "realproxy", "night")
    if domain_set == "fig3":
        return ("snow", "raincityscapes", "raindrop")
    raise ValueError(f"domain set {domain_set!r}: expected one of {DOMAIN_SETS}")


def analysed_domains(domain_set: str, profile: str | Profile) -> tuple[str, ...]:
    """The domains a run embeds: its training domains, and for ``fig2`` Rain200L too (a training set of the
    DRD-Net models of the transfer test, never trained on here)."""
    return domains(domain_set, profile) + (("rain200l",) if domain_set == "fig2" else ())


@dataclass(frozen=True)
class RunSpec:
    encoder: str  # "rainmer" or "airnet"
    domain_set: str  # "fig2" or "fig3"
    seed: int
    renderer_version: int = RENDERER_VERSION
    # The InfoNCE temperature when it is not the profile's (a sensitivity run, "-t<τ>" in the id)
    temperature: float | None = None

    def __post_init__(self) -> None:
        check_choice("encoder", self.encoder, ENCODERS)
        check_choice("domain_set", self.domain_set, DOMAIN_SETS)

    @property
    def run_id(self) -> str:
        tau = "" if self.temperature is None else f"-t{self.temperature:g}"
        return f"{self.encoder}-{self.domain_set}{tau}-v{self.renderer_version}-s{self.seed}"


#: The sensitivity run's temperature: the public code's τ = 1.0 bounds the InfoNCE logits to [−1, 1]; MoCo's and
#: AirNet's are 0.07-0.2. One run at the first seed says whether the study's answers hang on it.
SENSITIVITY_TEMPERATURE = 0.1


def study_queue(profile: str | Profile) -> list[RunSpec]:
    """Rainmer on Fig. 2's domains, AirNet on the same, and Rainmer on Fig. 3's, one run per profile seed each;
    then Rainmer on Fig. 2's domains at :data:`SENSITIVITY_TEMPERATURE` with the first seed."""
    p = get_profile(profile)
    return [RunSpec(encoder, domain_set, seed) for encoder, domain_set in
            (("rainmer", "fig2"), ("airnet", "fig2"), ("rainmer", "fig3")) for seed in p.seeds] + [
        RunSpec("rainmer", "fig2", p.seeds[0], temperature=SENSITIVITY_TEMPERATURE)]


def runs_root(profile: str | Profile, data_root: str | Path | None = None, benchmark_seed: int = 0) -> Path:
    """``results/<profile>/rainmer/runs`` on the embedded benchmark (:func:`derainlib.study.runs_root`)."""
    return study.runs_root(profile, METHOD, data_root, benchmark_seed)


def benchmark_root(profile: str | Profile, data_root: str | Path | None = None, seed: int = 0,
                   version: int = RENDERER_VERSION) -> Path:
    """A user's ``data_root`` as is, else the embedded benchmark (built on first use)."""
    if data_root is not None:
        return Path(data_root)
    return build_benchmark(default_benchmark_root(profile, seed, version), profile, seed=seed, version=version)


def train_config(spec: RunSpec, profile: str | Profile, data_root: str | Path) -> RainmerConfig:
    """The :class:`RainmerConfig` of ``spec`` at ``profile``'s sizes."""
    p = get_profile(profile)
    s = p.rainmer
    return RainmerConfig(
        data_root=str(data_root), domains=domains(spec.domain_set, p), encoder=spec.encoder, width=s.width,
        embed_dim=s.embed_dim, moe_hidden=s.moe_hidden, airnet_width=s.airnet_width, crop_size=s.crop_size,
        batch_size=s.batch_size, steps=s.steps, learning_rate=s.learning_rate, momentum=s.momentum,
        temperature=(spec.temperature if spec.temperature is not None
                     else s.temperature if spec.encoder == "rainmer" else s.airnet_temperature),
        queue_size=s.queue_size, bank_size=s.bank_size, colour_archive_size=s.colour_archive_size,
        chromatic_negatives=s.chromatic_negatives, degradation_negatives=s.degradation_negatives, seed=spec.seed,
        device=p.device, bf16=p.bf16, channels_last=p.channels_last, num_workers=p.num_workers,
        checkpoint_every=p.checkpoint_every)


def _scores(table: analysis.EmbeddingTable, trained: list[str]) -> dict[str, dict[str, float]]:
    keep = np.isin(table.labels, trained)
    return {space: {"silhouette": analysis.silhouette(vectors[keep], table.labels[keep]),
                    "knn_accuracy": analysis.knn_accuracy(vectors[keep], table.labels[keep])}
            for space, vectors in table.spaces.items()}


def control_embeddings(spec: RunSpec, profile: str | Profile, data_root: Path) -> analysis.EmbeddingTable:
    """The images :func:`evaluate_run` embeds, in the controls' spaces: ``untrained <space>`` (the run's encoder
    with the weights its training starts from, :func:`derainlib.train_rainmer.initial_networks`) and
    ``statistics`` (:class:`~derainlib.analysis.rainmer.ImageStatistics`, standardised over these images)."""
    p = get_profile(profile)
    config = train_config(spec, p, data_root)
    untrained = initial_networks(config).encoder.to(resolve_device(p.device))
    args = (data_root, analysed_domains(spec.domain_set, p), p.images_per_dataset, p.rainmer.embed_size)
    start = analysis.embed_domains(untrained, *args)
    statistics = analysis.embed_domains(analysis.ImageStatistics(), *args)
    if list(start.names) != list(statistics.names):
        raise RuntimeError("the two controls embedded different images")
    spaces = {UNTRAINED + space: vectors for space, vectors in start.spaces.items()}
    spaces["statistics"] = analysis.standardized(statistics.spaces["statistics"])
    return analysis.EmbeddingTable(start.labels, start.names, spaces)


def write_controls(spec: RunSpec, profile: str | Profile, data_root: Path, run_dir: Path) -> dict:
    """Write ``controls.npz`` into ``run_dir``; return the controls' silhouette and k-NN numbers per space."""
    table = control_embeddings(spec, profile, data_root)
    analysis.save_embeddings(Path(run_dir) / CONTROLS, table)
    return _scores(table, list(domains(spec.domain_set, profile)))


def evaluate_run(spec: RunSpec, profile: str | Profile, data_root: Path, run_dir: Path) -> dict:
    """Embed the analysed domains with the trained encoder into ``embeddings.npz`` and with the controls into
    ``controls.npz``; return the silhouette and k-NN accuracy of each space (the pictures' falsifiable numbers)
    and of each control's."""
    p = get_profile(profile)
    encoder, _ = load_encoder(run_dir / "model.pt", resolve_device(p.device))
    table = analysis.embed_domains(encoder, data_root, analysed_domains(spec.domain_set, p),
                                   p.images_per_dataset, p.rainmer.embed_size)
    analysis.save_embeddings(run_dir / EMBEDDINGS, table)
    return {"embedding": {"images": int(len(table.labels)), "domains": list(analysed_domains(spec.domain_set, p))},
            "spaces": _scores(table, list(domains(spec.domain_set, p))),
            "controls": write_controls(spec, p, data_root, run_dir)}


def study_run(spec: RunSpec, profile: str | Profile, *, data_root: str | Path | None = None,
              benchmark_seed: int = 0, progress: bool | None = None) -> study.StudyRun:
    """``spec`` as the study queue runs it: train with :func:`derainlib.train_rainmer.train_rainmer`, then embed
    and score with :func:`evaluate_run`. The benchmark is built only when the run is trained or scored."""
    p = get_profile(profile)
    source = cache(lambda: distributed.in_turn(
        lambda: benchmark_root(p, data_root, seed=benchmark_seed, version=spec.renderer_version)))

    def train_run(run_dir: Path) -> study.Trained:
        config = train_config(spec, p, source())
        result = train_rainmer(config, run_dir, progress=progress)
        facts = {"spec": asdict(spec), "domains": list(config.domains), "crop_size": config.crop_size,
                 "batch_size": config.batch_size, "bf16": config.bf16,
                 "benchmark_seed": None if data_root is not None else benchmark_seed,
                 "benchmark_renderer_version": None if data_root is not None else benchmark_renderer_version(source())}
        return study.Trained(result.steps, result.wall_time_s, facts)

    return study.StudyRun(spec.run_id, train_run, lambda run_dir: evaluate_run(spec, p, source(), run_dir))


def run(spec: RunSpec, profile: str | Profile, *, data_root: str | Path | None = None, benchmark_seed: int = 0,
        progress: bool | None = None) -> dict:
    """Train (or resume), embed and score one run; return its ``metrics.json`` record (a finished run is read
    back). Under ``ci`` the run goes into a fresh temporary folder."""
    p = get_profile(profile)
    run_dir = runs_root(p, data_root, benchmark_seed) / spec.run_id
    return study.run_once(study_run(spec, p, data_root=data_root, benchmark_seed=benchmark_seed, progress=progress),
                          run_dir, p.name)


def run_folder(spec: RunSpec, profile: str | Profile, data_root: str | Path | None = None,
               benchmark_seed: int = 0) -> Path:
    return runs_root(profile, data_root, benchmark_seed) / spec.run_id


def finished_runs(profile: str | Profile, data_root: str | Path | None = None) -> dict[RunSpec, Path]:
    """The study's runs that have ``embeddings.npz`` and a record, by spec (none while the study has not run)."""
    root = runs_root(profile, data_root)
    return {spec: root / spec.run_id for spec in study_queue(profile)
            if (root / spec.run_id / EMBEDDINGS).is_file() and (root / spec.run_id / study.METRICS).is_file()}


def train_queue(profile: str | Profile, *, data_root: str | Path | None = None,
                benchmark_seed: int = 0) -> dict[RunSpec, Path]:
    """Train (or read back) every run of the profile's queue; their folders by spec. For a profile that trains
    inside the notebooks (``ci``), into a fresh temporary folder."""
    p = get_profile(profile)
    folders = {}
    for spec in study_queue(p):
        run(spec, p, data_root=data_root, benchmark_seed=benchmark_seed, progress=False)
        folders[spec] = run_folder(spec, p, data_root, benchmark_seed)
    return folders


# ----------------------------------------------------------------------------- the transfer test's PSNR


def transfer_table_path(profile: str | Profile = "cpu") -> Path:
    """``results/<profile>/rainmer/transfer_psnr.csv`` (written by ``--transfer``)."""
    return results_dir(get_profile(profile).name) / METHOD / TRANSFER_TABLE


def drdnet_specs(profile: str | Profile = "cpu") -> list:
    """The supervised DRD-Net runs (``BL+SE+SDCAB``, the study's width and blocks, every seed) that the transfer
    test reads, one per training domain and seed, trained on the same renderer version as the embeddings
    (:data:`RENDERER_VERSION`): Semi-DRDNet's study queue trains them as the stable reading's warm starts."""
    from .semi_drdnet_runs import supervised_run

    sizes = get_profile(profile).semi_drdnet
    return [supervised_run(dataset, "BL+SE+SDCAB", seed, sizes.width, sizes.num_blocks,
                           renderer_version=RENDERER_VERSION)
            for dataset in TRANSFER_TRAIN_DOMAINS for seed in get_profile(profile).seeds]


def drdnet_models(profile: str | Profile = "cpu") -> dict[str, list[Path]]:
    """The finished runs of :func:`drdnet_specs`, by training domain: their ``model.pt``."""
    p = get_profile(profile)
    found: dict[str, list[Path]] = {}
    for spec in drdnet_specs(p):
        model = results_dir(p.name) / "semi_drdnet" / "runs" / spec.run_id / "model.pt"
        if model.is_file():
            found.setdefault(spec.dataset, []).append(model)
    return found


def shipped_models() -> dict[str, list[Path]]:
    """The models shipped in ``derainlib.pretrained`` (one per training set), for the ``ci`` pipeline check."""
    from .. import pretrained

    return {name: [pretrained.model_path(name)] for name in pretrained.available() if name in TRANSFER_TRAIN_DOMAINS}


def write_transfer_table(profile: str | Profile = "cpu", output: Path | None = None) -> Path:
    """Compute :func:`derainlib.analysis.rainmer.cross_domain_psnr` for the study's DRD-Net models on the
    profile's benchmark and write it to ``results/<profile>/rainmer/transfer_psnr.csv``."""
    p = get_profile(profile)
    models = drdnet_models(p)
    if set(models) != set(TRANSFER_TRAIN_DOMAINS):
        missing = [spec.run_id for spec in drdnet_specs(p) if spec.dataset not in models]
        raise FileNotFoundError(
            f"the transfer test needs a finished supervised DRD-Net run on renderer version {RENDERER_VERSION} per "
            f"training domain under {results_dir(p.name)}/semi_drdnet/runs; train them with `python -m "
            f"derainlib.experiments.semi_drdnet --profile {p.name} --only {' '.join(missing)}`")
    table = analysis.cross_domain_psnr(models, benchmark_root(p), analysed_domains("fig2", p),
                                       max_images=p.rainmer.transfer_images, device=resolve_device(p.device))
    output = output or transfer_table_path(p)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    return output


def pipeline_transfer(profile: str | Profile, data_root: str | Path | None = None, seed: int = 0):
    """The cross-domain PSNR of the shipped models (one per training set) on the profile's benchmark: the transfer
    test's pipeline, for profiles without a study of their own (``ci``)."""
    p = get_profile(profile)
    return analysis.cross_domain_psnr(shipped_models(), benchmark_root(p, data_root, seed=seed),
                                      analysed_domains("fig2", p), max_images=p.rainmer.transfer_images)


def repeated_losses(config: RainmerConfig, repeats: int = 2) -> list[list[float]]:
    """The total loss of every step of ``config``, trained ``repeats`` times from scratch in temporary folders."""
    losses = []
    for _ in range(repeats):
        values: list[float] = []
        with tempfile.TemporaryDirectory(prefix="rainmer-repeat-") as folder:
            train_rainmer(config, Path(folder) / "run", progress=False,
                          on_step=lambda step, terms: values.append(terms["total"]))
        losses.append(values)
    return losses


def reproducibility(spec: RunSpec, profile: str | Profile, steps: int, data_root: str | Path | None = None) -> pd.DataFrame:
    """Is training ``spec`` bit-reproducible? Its first ``steps`` steps trained twice with the profile's precision
    (bf16 autocast or not) and twice in fp32, same seed and data order: per precision, the first step whose
    losses differ (``-1``: none), how many steps differ and the largest relative difference."""
    p = get_profile(profile)
    config = replace(train_config(spec, p, benchmark_root(p, data_root, version=spec.renderer_version)),
                     steps=steps, checkpoint_every=steps)
    rows = []
    for bf16 in sorted({config.bf16, False}, reverse=True):
        first, second = repeated_losses(replace(config, bf16=bf16))
        differ = [i for i, (a, b) in enumerate(zip(first, second)) if a != b]
        relative = max(abs(a - b) / abs(a) for a, b in zip(first, second))
        rows.append({"run_id": spec.run_id, "precision": "bf16 autocast" if bf16 else "fp32", "steps": steps,
                     "first_differing_step": differ[0] if differ else -1, "differing_steps": len(differ),
                     "max_relative_difference": relative, "num_workers": config.num_workers})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = study.queue_arguments("Rainmer representation")
    parser.add_argument("--transfer", action="store_true",
                        help="compute the cross-domain PSNR table of the supervised DRD-Net runs, then exit (9 models "
                             "on 7 test splits; about an hour on one CPU thread, silent until it writes the table)")
    parser.add_argument("--controls", action="store_true",
                        help=f"write {CONTROLS} for the finished runs that lack it, then exit")
    parser.add_argument("--reproducibility", metavar="RUN_ID",
                        help="train the first --steps steps of RUN_ID twice in the profile's precision and twice in "
                             "fp32, write where the losses first differ, then exit")
    parser.add_argument("--steps", type=int, default=20, help="steps for --reproducibility")
    args = parser.parse_args(argv)
    p = get_profile(args.profile)
    if args.reproducibility:
        spec = next((spec for spec in study_queue(p) if spec.run_id == args.reproducibility), None)
        if spec is None:
            parser.error(f"--reproducibility {args.reproducibility}: not a run of the {p.name} queue")
        table = reproducibility(spec, p, args.steps)
        output = results_dir(p.name) / "rainmer" / "reproducibility.csv"
        with atomic_path(output) as path:
            table.to_csv(path, index=False)
        print(table.to_string(index=False), f"\nwrote {output}", flush=True)
        return 0
    if args.transfer:
        print(f"wrote {write_transfer_table(p)}", flush=True)
        return 0
    if args.controls:
        for spec, folder in finished_runs(p).items():
            if not (folder / CONTROLS).is_file():
                scores = write_controls(spec, p, benchmark_root(p, version=spec.renderer_version), folder)
                print(f"wrote {folder / CONTROLS}: {scores}", flush=True)
        return 0
    root = runs_root(p)
    queue = study.queue_selection(parser, args, study_queue(p), root)
    if queue is None:
        return 0

    def after_each(done: study.StudyRun, record: dict) -> None:
        spaces = ", ".join(f"{space} silhouette {scores['silhouette']:.3f}" for space, scores in record["spaces"].items())
        print(f"done {done.run_id}: {spaces}, {record['train_wall_time_s'] / 3600:.2f} h", flush=True)

    study.work_through([study_run(spec, p, progress=False) for spec in queue], root, p.name,
                       budget_hours=args.budget_hours, after_each=after_each)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
