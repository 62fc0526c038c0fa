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
    # Steps of a stable-reading run after its warm start (the supervised run it starts from trains
    # ``iterations``); a stable step costs several supervised ones (VGG-16 in float32 on every phase).
    stable_iterations: int
    learning_rate: float
    val_every_epochs: int  # validation PSNR in log.csv every this many epochs (0: never)
    datasets: tuple[str, ...]  # the labeled training sets whose rows the tables train
    # Table III's (widths, blocks per branch); a scaled grid is matched to the paper's cells by position.
    table_iii_grid: tuple[tuple[int, ...], tuple[int, ...]]
    stability_window: int  # training steps of each reading's stability diagnostic (semi_drdnet_stability)
    figure8_crop: int  # square crop side of the feature-distance figure (Fig. 8) in notebook 11


@dataclass(frozen=True)
class ANLCLSizes:
    """ANLCL's sizes in one profile: generators, the two training stages (§4.6), and the contrastive sampling."""

    width: int  # generator channels (the paper's 9-block model is width 60 by Table 8's 2.6 MB)
    num_blocks: int  # residual blocks per generator (the paper: 9)
    crop_size: int  # square training crops (the paper: 256)
    batch_size: int
    pretrain_iterations: int  # stage 1: supervised pretraining of both generators with the GAN, no contrastive loss
    iterations: int  # stage 2: unsupervised fine-tuning with every loss (Eq. (4))
    learning_rate: float  # Adam (the paper: 1e-4)
    temperature: float  # layer / asymmetric contrastive τ (the paper: 0.77; the public code: 0.07)
    location_temperature: float  # PatchNCE τ of Eq. (6) (CUT and the public code: 0.07)
    momentum: float  # MoCo key-encoder momentum (the paper: 0.99)
    num_location_patches: int  # N, anchors of the location contrastive per image (the paper: 256)
    num_positives: int  # N_B (the paper: 8)
    num_negatives: int  # N_R (the paper: 256)
    patch_size: int  # sampled patch side (the public code: 16)
    search_window: int  # non-local search window side (the public code: 40)
    # stage 1's Adam step size when it differs from ``learning_rate`` (None: the same): a stage 1 of a thousand
    # steps learns little at the paper's 1e-4 (docs/anlcl.md, "Stage 1 at the cpu scale")
    pretrain_learning_rate: float | None = None


@dataclass(frozen=True)
class RainmerSizes:
    """Rainmer's representation study in one profile: the encoders, their MoCo training, and the analyses.

    The supplement (App. B) fixes the encoder's shape (conv3x3 3→48, MoEs of 4 stages × 8 experts, two
    projectors); the rest is ours or the public code's (``docs/rainmer.md`` lists each choice)."""

    width: int  # channels after the first conv and through the MoEs (the supplement: 48)
    embed_dim: int  # channels of each projector, the embedding's length (the public code: 128)
    moe_hidden: int  # hidden units of the MoEs' weight generator (the public code: 64)
    airnet_width: int  # AirNet's encoder: channels (w, 2w, 4w) of its three residual blocks (AirNet: 64)
    crop_size: int  # square training crops; the two views of an image are two crops
    batch_size: int
    steps: int
    learning_rate: float  # Adam
    momentum: float  # MoCo key-encoder momentum (the public code: 0.999)
    temperature: float  # Rainmer's InfoNCE τ (the public code: 1.0)
    airnet_temperature: float  # AirNet's τ (AirNet's code: 0.07)
    queue_size: int  # MoCo queue of past keys, per space (AirNet: 256 × batch)
    bank_size: int  # FIFO bank of O − B rain layers (the public code: 256)
    colour_archive_size: int  # mean colours kept for the chromatic negatives
    chromatic_negatives: int  # recoloured copies of each query crop
    degradation_negatives: int  # the clean crop plus this many − 1 clean + archived rain layers
    embed_size: int  # images are resized to this square before embedding for the analyses (the public code: 128)
    umap_epochs: int | None  # None: umap-learn's default (500 for small sets)
    bootstrap: int  # resamples of each bootstrap confidence interval
    ddn_types: tuple[int, int]  # the light and thick DDN rain types of Fig. 2 (the supplement: 1 and 5)
    transfer_images: int | None  # test images per domain for the cross-domain PSNR (None: every one)


# A later method adds its own frozen section here and a field of that type on Profile, filled in every
# profile below; the shared sizes stay on Profile.


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
    anlcl: ANLCLSizes
    rainmer: RainmerSizes
    # --- speed (benchmarks/bench_semi_drdnet.py measures both against plain fp32) ---
    bf16: bool = False  # bf16 autocast in training and inference
    channels_last: bool = False
    compile_mode: str | None = None  # torch.compile's mode for training (derainlib.train.TrainConfig)
    checkpoint_every: int = 100  # training steps between checkpoints
    # True: notebooks train every run they show, into a fresh temporary folder (a stale run from older
    # code never feeds a committed notebook); False: runs are read from results/<profile>/ and trained
    # by the study queue.
    train_in_notebooks: bool = False
    # --- renderer versions 1 against 2 (notebook 00, derainlib.experiments.renderer_study.write_comparison) ---
    renderer_photos: int = 12  # shipped test photos rendered by both versions into every domain
    renderer_size: int = 256  # their longer side in pixels

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
            width=8, num_blocks=2, patch_size=48, batch_size=4, iterations=20, stable_iterations=10, learning_rate=1e-3,
            val_every_epochs=2, datasets=("rain200h",), table_iii_grid=((4, 8, 16), (1, 2, 3)),
            stability_window=20, figure8_crop=64),
        anlcl=ANLCLSizes(
            width=8, num_blocks=2, crop_size=64, batch_size=2, pretrain_iterations=4, iterations=6,
            learning_rate=1e-4, temperature=0.77, location_temperature=0.07, momentum=0.99, patch_size=16,
            search_window=40, num_location_patches=16, num_positives=4, num_negatives=16, pretrain_learning_rate=1e-3),
        # DDN type 8 stands in for type 5: the ci benchmark renders types 1 and 8 only.
        rainmer=RainmerSizes(
            width=8, embed_dim=16, moe_hidden=8, airnet_width=4, crop_size=32, batch_size=4, steps=4,
            learning_rate=1e-3, momentum=0.999, temperature=1.0, airnet_temperature=0.07, queue_size=16,
            bank_size=256, colour_archive_size=32, chromatic_negatives=2, degradation_negatives=2, embed_size=32,
            umap_epochs=30, bootstrap=100, ddn_types=(1, 8), transfer_images=3),
        checkpoint_every=10, train_in_notebooks=True, renderer_photos=2, renderer_size=128,
    ),
    "cpu": Profile(
        name="cpu",
        description="the study profile: scaled to a 2-core CPU, hours in total, resumable",
        n_train=None, n_val=None, n_test=None, image_size=None, ddn_types=ALL_DDN_TYPES,
        seeds=(0, 1, 2), num_workers=2, device="auto", images_per_dataset=150,
        # A semi-supervised step runs VGG-16 on dozens of images per phase, so a few thousand steps is
        # what a 2-core CPU affords per run.
        semi_drdnet=SemiDRDNetSizes(
            width=16, num_blocks=8, patch_size=64, batch_size=8, iterations=2000,
            stable_iterations=300, learning_rate=1e-3,
            val_every_epochs=20, datasets=("rain200l", "rain200h", "rain800"), table_iii_grid=PAPER_TABLE_III_GRID,
            stability_window=300, figure8_crop=128),
        # 128×128 crops and a width that suits the vector units; N and N_R halved with the crop's area
        # (§4.6 uses 256²). Stage 1 is trained once per seed and shared (anlcl_runs.Stage1Spec). Stage 2 was
        # cut from 1000 steps to 250 after the first runs: every setting's effect is in place by then, and the
        # 63 runs of Tables 3-5 and 9 fit in about 15 CPU hours instead of about 55 (docs/anlcl.md).
        anlcl=ANLCLSizes(
            width=32, num_blocks=9, crop_size=128, batch_size=4, pretrain_iterations=1000, iterations=250,
            learning_rate=1e-4, temperature=0.77, location_temperature=0.07, momentum=0.99, patch_size=16,
            search_window=40, num_location_patches=128, num_positives=8, num_negatives=128,
            pretrain_learning_rate=1e-3),
        # Two thirds of the supplement's width (48) and half the projectors' (128), on 48×48 crops: a step of
        # the full-width encoder on 64×64 crops took about 20 s on 2 cores, this one 1.6-1.7 s
        # (bf16 autocast, 2 threads on an idle machine): about 35 min a run.
        rainmer=RainmerSizes(
            width=32, embed_dim=64, moe_hidden=64, airnet_width=32, crop_size=48, batch_size=8, steps=1200,
            learning_rate=1e-3, momentum=0.999, temperature=1.0, airnet_temperature=0.07, queue_size=1024,
            bank_size=256, colour_archive_size=256, chromatic_negatives=4, degradation_negatives=4, embed_size=128,
            umap_epochs=None, bootstrap=1000, ddn_types=(1, 5), transfer_images=None),
        # Every 25 steps: a stage-2 step of ANLCL takes tens of seconds here, and a worker stopped mid-run
        # loses what came after the last checkpoint.
        bf16=True, channels_last=True, checkpoint_every=25,
    ),
    "gpu": Profile(
        name="gpu",
        description="one data-centre GPU: full-width networks on the embedded benchmark",
        n_train=None, n_val=None, n_test=None, image_size=None, ddn_types=ALL_DDN_TYPES,
        # "cuda", not "auto": asking for the GPU profile on a machine without one is an error, not a slow run.
        seeds=(0, 1, 2), num_workers=8, device="cuda", images_per_dataset=500,
        semi_drdnet=SemiDRDNetSizes(
            width=64, num_blocks=16, patch_size=100, batch_size=8, iterations=30000,
            stable_iterations=10000, learning_rate=1e-3,
            val_every_epochs=20, datasets=("rain200l", "rain200h", "rain800"), table_iii_grid=PAPER_TABLE_III_GRID,
            stability_window=300, figure8_crop=128),
        anlcl=ANLCLSizes(
            width=60, num_blocks=9, crop_size=256, batch_size=4, pretrain_iterations=5000, iterations=20000,
            learning_rate=1e-4, temperature=0.77, location_temperature=0.07, momentum=0.99, patch_size=16,
            search_window=40, num_location_patches=256, num_positives=8, num_negatives=256),
        rainmer=RainmerSizes(
            width=48, embed_dim=128, moe_hidden=64, airnet_width=64, crop_size=128, batch_size=16, steps=20000,
            learning_rate=1e-3, momentum=0.999, temperature=1.0, airnet_temperature=0.07, queue_size=4096,
            bank_size=256, colour_archive_size=256, chromatic_negatives=8, degradation_negatives=8, embed_size=128,
            umap_epochs=None, bootstrap=1000, ddn_types=(1, 5), transfer_images=None),
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
            width=64, num_blocks=16, patch_size=100, batch_size=8, iterations=150 * 3375,
            stable_iterations=150 * 3375, learning_rate=1e-3,
            val_every_epochs=20, datasets=("rain200l", "rain200h", "rain800"), table_iii_grid=PAPER_TABLE_III_GRID,
            stability_window=300, figure8_crop=128),
        # §4.6: 9 blocks, 256² crops, batch 4, Adam 1e-4, N=256, N_B=8, N_R=256, τ=0.77, m=0.99. The paper gives
        # no schedule: 200 epochs of SPA's 2000 training images at batch 4 (500 steps each) is our choice.
        anlcl=ANLCLSizes(
            width=60, num_blocks=9, crop_size=256, batch_size=4, pretrain_iterations=50000, iterations=100000,
            learning_rate=1e-4, temperature=0.77, location_temperature=0.07, momentum=0.99, patch_size=16,
            search_window=40, num_location_patches=256, num_positives=8, num_negatives=256),
        # The supplement gives no schedule for the representations; AirNet's encoder warm-up (100 epochs) at
        # batch 16 on 128² crops is our choice.
        rainmer=RainmerSizes(
            width=48, embed_dim=128, moe_hidden=64, airnet_width=64, crop_size=128, batch_size=16, steps=100000,
            learning_rate=1e-3, momentum=0.999, temperature=1.0, airnet_temperature=0.07, queue_size=4096,
            bank_size=256, colour_archive_size=256, chromatic_negatives=8, degradation_negatives=8, embed_size=128,
            umap_epochs=None, bootstrap=1000, ddn_types=(1, 5), transfer_images=None),
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
