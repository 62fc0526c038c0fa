"""The four run profiles: the only place where sizes live.

Every experiment and notebook takes a ``profile`` name and reads its sizes from here: the shared
ones (the embedded benchmark, seeds, the machine) on :class:`Profile` itself, and each method's
network and training sizes in its own section (``profile.semi_drdnet.width``, ...).

- ``ci``: minutes per notebook on a 2-core CPU, repeatable on one machine. It proves the pipeline;
  its numbers mean nothing about the methods. The committed notebooks are executed with it.
- ``cpu``: the study profile, where our reported numbers come from. Scaled to a 2-core CPU
  (Table III's own smallest width, 64×64 patches, a few thousand steps), hours in total, resumable.
- ``gpu``: one data-centre GPU (CUDA required): full-width networks on the embedded benchmark.
- ``paper``: the papers' own settings (Semi-DRDNet: M=64, 16+3 blocks, 100×100 patches, batch 8,
  Adam 1e-3 for 150 epochs), for users with a real GPU and the real datasets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ALL_DDN_TYPES: tuple[int, ...] = tuple(range(1, 15))

#: The paper's Table III grid (Semi-DRDNet §IV-C): widths M and residual blocks per branch (D = blocks + 3).
PAPER_TABLE_III_GRID: tuple[tuple[int, ...], tuple[int, ...]] = ((16, 32, 64), (8, 12, 16))


@dataclass(frozen=True)
class SemiDRDNetSizes:
    """Semi-DRDNet's sizes in one profile (network, training, and the study's tables)."""

    width: int  # channels M (Semi-DRDNet Table III)
    num_blocks: int  # residual blocks per branch (Table III's D = num_blocks + 3)
    patch_size: int
    batch_size: int
    iterations: int
    learning_rate: float
    val_every_epochs: int  # validation PSNR in log.csv every this many epochs (0: never)
    datasets: tuple[str, ...]  # the labeled training sets whose rows the tables train
    # Table III's (widths, blocks per branch); a scaled grid is matched to the paper's cells by position.
    table_iii_grid: tuple[tuple[int, ...], tuple[int, ...]]
    stability_window: int  # training steps of each reading's stability diagnostic (semi_drdnet_stability)
    figure8_crop: int  # square crop side of the feature-distance figure (Fig. 8) in notebook 11


# A later method adds its own frozen section here (``anlcl: ANLCLSizes``, ``rainmer: RainmerSizes``) and
# a field of that type on Profile, filled in every profile below; the shared sizes stay on Profile.


@dataclass(frozen=True)
class Profile:
    """Sizes for one profile. ``None`` for a photo count means every photo of that split."""

    name: str
    description: str
    # --- the embedded benchmark ---
    n_train: int | None  # photos per split rendered into every domain
    n_val: int | None
    n_test: int | None
    image_size: int | None  # longer side of the rendered images; None keeps the shipped size (<= 512)
    ddn_types: tuple[int, ...]  # DDN-Data renders 14 rain types per clean image
    # --- every method's study ---
    seeds: tuple[int, ...]  # training seeds of the study's runs
    num_workers: int
    device: str  # "auto" (CUDA when present), "cpu" or "cuda"; see derainlib.runtime.resolve_device
    images_per_dataset: int  # for t-SNE / UMAP embeddings (Rainmer uses 500)
    # --- per method ---
    semi_drdnet: SemiDRDNetSizes
    # --- speed (benchmarks/bench_semi_drdnet.py measures both against plain fp32) ---
    bf16: bool = False  # bf16 autocast in training and inference
    channels_last: bool = False
    compile_mode: str | None = None  # torch.compile's mode for training (derainlib.train.TrainConfig)
    checkpoint_every: int = 100  # training steps between checkpoints
    # True: notebooks train every run they show, into a fresh temporary folder (a stale run from older
    # code never feeds a committed notebook); False: runs are read from results/<profile>/ and trained
    # by the study queue.
    train_in_notebooks: bool = False

    def as_dict(self) -> dict:
        """Plain-dict view, for provenance records: method sections flattened to ``"semi_drdnet.width"`` keys."""
        flat = {}
        for key, value in asdict(self).items():
            if isinstance(value, dict):
                flat |= {f"{key}.{inner}": inner_value for inner, inner_value in value.items()}
            else:
                flat[key] = value
        return flat


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        description="pipeline proof: tiny data and models, minutes per notebook on 2 CPU cores",
        n_train=12, n_val=4, n_test=6, image_size=128, ddn_types=(1, 8),
        # Always the CPU: the committed notebooks hold CPU numbers, and nbval re-runs them.
        seeds=(0,), num_workers=0, device="cpu", images_per_dataset=24,
        semi_drdnet=SemiDRDNetSizes(
            width=8, num_blocks=2, patch_size=48, batch_size=4, iterations=20, learning_rate=1e-3,
            val_every_epochs=2, datasets=("rain200h",), table_iii_grid=((4, 8, 16), (1, 2, 3)),
            stability_window=20, figure8_crop=64),
        checkpoint_every=10, train_in_notebooks=True,
    ),
    "cpu": Profile(
        name="cpu",
        description="the study profile: scaled to a 2-core CPU, hours in total, resumable",
        n_train=None, n_val=None, n_test=None, image_size=None, ddn_types=ALL_DDN_TYPES,
        seeds=(0, 1, 2), num_workers=2, device="auto", images_per_dataset=150,
        # A semi-supervised step runs VGG-16 on dozens of images per phase, so a few thousand steps is
        # what a 2-core CPU affords per run.
        semi_drdnet=SemiDRDNetSizes(
            width=16, num_blocks=8, patch_size=64, batch_size=8, iterations=2000, learning_rate=1e-3,
            val_every_epochs=20, datasets=("rain200l", "rain200h", "rain800"), table_iii_grid=PAPER_TABLE_III_GRID,
            stability_window=300, figure8_crop=128),
        bf16=True, channels_last=True,
    ),
    "gpu": Profile(
        name="gpu",
        description="one data-centre GPU: full-width networks on the embedded benchmark",
        n_train=None, n_val=None, n_test=None, image_size=None, ddn_types=ALL_DDN_TYPES,
        # "cuda", not "auto": asking for the GPU profile on a machine without one is an error, not a slow run.
        seeds=(0, 1, 2), num_workers=8, device="cuda", images_per_dataset=500,
        semi_drdnet=SemiDRDNetSizes(
            width=64, num_blocks=16, patch_size=100, batch_size=8, iterations=30000, learning_rate=1e-3,
            val_every_epochs=20, datasets=("rain200l", "rain200h", "rain800"), table_iii_grid=PAPER_TABLE_III_GRID,
            stability_window=300, figure8_crop=128),
        # CUDA graphs: batch-8 steps of these small networks are launch-bound on a large GPU.
        bf16=True, channels_last=True, compile_mode="reduce-overhead", checkpoint_every=500,
    ),
    "paper": Profile(
        name="paper",
        description="the papers' own settings, for a real GPU and the real datasets",
        n_train=None, n_val=None, n_test=None, image_size=None, ddn_types=ALL_DDN_TYPES,
        seeds=(0,), num_workers=8, device="auto", images_per_dataset=500,
        # 150 epochs of Rain200H: 1800 images x ~15 100x100 patches at stride 80 / batch 8 = 3375 steps/epoch.
        semi_drdnet=SemiDRDNetSizes(
            width=64, num_blocks=16, patch_size=100, batch_size=8, iterations=150 * 3375, learning_rate=1e-3,
            val_every_epochs=20, datasets=("rain200l", "rain200h", "rain800"), table_iii_grid=PAPER_TABLE_III_GRID,
            stability_window=300, figure8_crop=128),
        checkpoint_every=3375,
    ),
}


def get_profile(profile: str | Profile) -> Profile:
    """Look a profile up by name (a :class:`Profile` passes through); unknown names raise ValueError."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except (KeyError, TypeError):
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}") from None
