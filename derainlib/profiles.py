"""The four run profiles: the only place where sizes live.

Every experiment and notebook takes a ``profile`` name and reads its sizes from here.

- ``ci``: minutes per notebook on a 2-core CPU, bit-for-bit repeatable. It proves the pipeline;
  its numbers mean nothing about the methods. The committed notebooks are executed with it.
- ``cpu``: the study profile, where our reported numbers come from. Scaled to a 2-core CPU
  (Table III's own smallest width, 64×64 patches, a few thousand steps), hours in total, resumable.
- ``gpu``: one H100, for the rare session that is lent one.
- ``paper``: the papers' own settings (Semi-DRDNet: M=64, 16+3 blocks, 100×100 patches, batch 8,
  Adam 1e-3 for 150 epochs), for users with a real GPU and the real datasets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ALL_DDN_TYPES: tuple[int, ...] = tuple(range(1, 15))


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
    # --- training ---
    patch_size: int
    batch_size: int
    width: int  # channels M (Semi-DRDNet Table III)
    depth: int  # residual blocks per branch (Table III's D = depth + 3)
    iterations: int
    learning_rate: float
    seeds: tuple[int, ...]
    num_workers: int
    device: str  # "auto" (CUDA when present), "cpu" or "cuda"; see derainlib.resolve_device
    # --- analyses ---
    images_per_dataset: int  # for t-SNE / UMAP embeddings (Rainmer uses 500)
    # --- speed (benchmarks/bench_semi_drdnet.py measures both against plain fp32) ---
    bf16: bool = False  # bf16 autocast in training and inference
    channels_last: bool = False
    compile_mode: str | None = None  # torch.compile's mode for training (derainlib.train.TrainConfig)
    checkpoint_every: int = 100  # training steps between checkpoints

    def as_dict(self) -> dict:
        """Plain-dict view, for provenance records in results tables."""
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        description="pipeline proof: tiny data and models, minutes per notebook on 2 CPU cores",
        n_train=12, n_val=4, n_test=6, image_size=128, ddn_types=(1, 8),
        patch_size=48, batch_size=4, width=8, depth=2, iterations=20, learning_rate=1e-3,
        # Always the CPU: the committed notebooks hold CPU numbers, and nbval re-runs them bit for bit.
        seeds=(0,), num_workers=0, device="cpu", images_per_dataset=24,
        checkpoint_every=10,
    ),
    "cpu": Profile(
        name="cpu",
        description="the study profile: scaled to a 2-core CPU, hours in total, resumable",
        n_train=None, n_val=None, n_test=None, image_size=None, ddn_types=ALL_DDN_TYPES,
        # 2000 steps: a semi-supervised step (two phases, 2x(8 + 4x8) VGG-16 images) takes ~1.2 s here,
        # so one Semi-DRDNet run is ~40 min and the whole study ~30 CPU-hours over several sessions.
        patch_size=64, batch_size=8, width=16, depth=8, iterations=2000, learning_rate=1e-3,
        seeds=(0, 1, 2), num_workers=2, device="auto", images_per_dataset=150,
        bf16=True, channels_last=True,
    ),
    "gpu": Profile(
        name="gpu",
        description="one H100 (when one is lent): full-width networks on the embedded benchmark",
        n_train=None, n_val=None, n_test=None, image_size=None, ddn_types=ALL_DDN_TYPES,
        patch_size=100, batch_size=8, width=64, depth=16, iterations=30000, learning_rate=1e-3,
        # "cuda", not "auto": asking for the GPU profile on a machine without one is an error, not a slow run.
        seeds=(0, 1, 2), num_workers=8, device="cuda", images_per_dataset=500,
        # CUDA graphs: batch-8 steps are launch-bound on an H100/H200 (README, "On CUDA").
        bf16=True, channels_last=True, compile_mode="reduce-overhead", checkpoint_every=500,
    ),
    "paper": Profile(
        name="paper",
        description="the papers' own settings, for a real GPU and the real datasets",
        n_train=None, n_val=None, n_test=None, image_size=None, ddn_types=ALL_DDN_TYPES,
        # 150 epochs of Rain200H: 1800 images x ~15 100x100 patches at stride 80 / batch 8 = 3375 steps/epoch.
        patch_size=100, batch_size=8, width=64, depth=16, iterations=150 * 3375, learning_rate=1e-3,
        seeds=(0,), num_workers=8, device="auto", images_per_dataset=500,
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
