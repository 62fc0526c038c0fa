"""Patch sampling for ANLCL's contrastive losses: non-local block matching (Eq. (9)) and the
strategies of Table 3 (random, neighbour, non-local).

Paper: Chang et al., "Unsupervised Deraining: Where Asymmetric Contrastive Learning Meets
Self-similarity" (ANLCL), §4.4. Block matching with the squared L2 distance of Eq. (9),

    Dist(p_i, p_j) = || p_i - p_j ||^2,

over a search window around each anchor patch: the top-k smallest distances give the non-local
positives, the top-k largest the *reverse* non-local negatives of the location contrastive (§4.4).

Conventions (every function here):

- A patch is named by its **top-left corner** ``(y, x)``; positions are int64 tensors ``(..., 2)``.
- ``images`` are ``N×C×H×W``; ``anchors`` are ``N×A×2`` (A anchor patches per image); sampled
  positions are ``N×A×k×2``.
- **Search window.** A ``window × window`` square centred on the anchor patch (its top-left is
  ``anchor - (window - patch) // 2``), shifted, not cropped, to lie inside the image, so every anchor
  has the same number of candidates, ``((window - patch) // stride + 1)^2`` (625 for the paper's
  40×40 window, 16×16 patches, stride 1). An image side shorter than ``window`` uses the whole side.
  The anchor itself is a candidate (distance 0), as in the public NLCL code.
- **Tie rule.** Candidates with equal distance are ordered by their flat index in the window,
  ``row * columns + column`` (raster order), lower first, for the nearest *and* the farthest top-k.
  The distances are computed in float32 as ``|p|^2 + |q|^2 - 2 p.q`` (clamped at 0); on integer-valued images
  (e.g. 8-bit levels times a power of two, small patches) every sum is exact, so ties are exact;
  on real-valued images two distances within float rounding of each other are ordered by their
  computed values.

The search is vectorised over images and anchors (no Python loop over positions): the cross term
``p.q`` for all candidates of all anchors is a batched correlation of each anchor's window with its
own patch (:func:`_window_correlation`), and ``|q|^2`` a box sum of each window's squared intensities;
only the window's candidates are compared, not every patch of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "STRATEGIES",
    "Matches",
    "block_match",
    "crop_patches",
    "neighbour_patches",
    "patch_features",
    "random_anchors",
    "random_patches",
    "sample_patches",
    "window_origin",
]

#: Bytes of the correlation's repeated-window operand per chunk on a CPU (about an L2 cache).
_CPU_CHUNK_BYTES = 2 * 2**20

#: Table 3's sampling strategies.
STRATEGIES: tuple[str, ...] = ("random", "neighbour", "nonlocal")


@dataclass
class Matches:
    """Top-k result of :func:`block_match`: ``positions`` ``N×A×k×2`` (top-left ``y, x``) and their
    squared L2 distances to the anchor patch, ``N×A×k`` (Eq. (9))."""

    positions: Tensor
    distances: Tensor


def _check_images_and_anchors(images: Tensor, anchors: Tensor, patch_size: int) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if patch_size < 1 or patch_size > min(h, w):
        raise ValueError(f"patch_size {patch_size} does not fit images of {h}×{w}")
    if anchors.dim() != 3 or anchors.shape[0] != n or anchors.shape[2] != 2:
        raise ValueError(f"anchors must be N×A×2 with N={n}, got shape {tuple(anchors.shape)}")
    if anchors.dtype != torch.int64:
        raise ValueError(f"anchors must be int64 top-left corners, got {anchors.dtype}")
    if anchors.numel() and (anchors.min() < 0 or anchors[..., 0].max() > h - patch_size
                            or anchors[..., 1].max() > w - patch_size):
        raise ValueError(f"an anchor patch of {patch_size}×{patch_size} lies outside the {h}×{w} image")


def window_origin(anchors: Tensor, image_hw: tuple[int, int], patch_size: int, window: int) -> tuple[Tensor, int, int]:
    """Top-left corner of each anchor's search window (``N×A×2``) and the window's height and width.

    The window is centred on the anchor patch and shifted inside the image (border-safe); a side
    shorter than ``window`` uses the whole image side.
    """
    h, w = image_hw
    if window < patch_size:
        raise ValueError(f"search window {window} is smaller than the patch ({patch_size})")
    win_h, win_w = min(window, h), min(window, w)
    half = (window - patch_size) // 2
    origin_y = (anchors[..., 0] - half).clamp(0, h - win_h)
    origin_x = (anchors[..., 1] - half).clamp(0, w - win_w)
    return torch.stack([origin_y, origin_x], dim=-1), win_h, win_w


def _box_sum(plane: Tensor, patch_size: int) -> Tensor:
    """Sum over every ``patch×patch`` box of an ``N×H×W`` plane: ``N×(H-P+1)×(W-P+1)``.

    An integral image in float64 (exact for integer-valued float32 planes), returned in float32.
    """
    integral = F.pad(plane.double().cumsum(1).cumsum(2), (1, 0, 1, 0))
    p = patch_size
    boxes = integral[:, p:, p:] - integral[:, :-p, p:] - integral[:, p:, :-p] + integral[:, :-p, :-p]
    return boxes.float()


def _window_correlation(windows: Tensor, patches: Tensor, chunk_bytes: int | None) -> Tensor:
    """``p.q`` for every patch ``q`` of each window (stride 1): ``M×(wh-P+1)×(ww-P+1)`` for ``M`` windows
    ``M×C×wh×ww`` and their patches ``M×C×P×P``.

    Correlating along x is one batched matmul over (channel, column-in-patch) per patch row ``u``;
    summing the row results along the diagonal ``r = dy + u`` gives the 2-D correlation. Exact on
    integer-valued images, like a convolution. The matmul's operand repeats each window ``P`` times,
    so on a CPU the windows go in chunks of about ``chunk_bytes`` of that operand, which stay in cache
    (about 4× faster than one pass, and 4× faster than a grouped convolution); ``None``: one pass.
    """
    m, c, wh, ww = windows.shape
    p = patches.shape[-1]
    cols = ww - p + 1
    per_window = c * p * wh * cols * windows.element_size()
    step = m if chunk_bytes is None else max(1, chunk_bytes // per_window)
    out = []
    for start in range(0, m, step):  # chunks of windows, not positions: each chunk is one vectorised pass
        strips = windows[start:start + step].unfold(-1, p, 1)  # m×C×wh×cols×P (a view)
        rows_by_u = torch.einsum("acrxv,acuv->aurx", strips, patches[start:start + step])  # m×P×wh×cols
        s = rows_by_u.stride()
        diagonal = rows_by_u.as_strided((rows_by_u.shape[0], p, wh - p + 1, cols), (s[0], s[1] + s[2], s[2], s[3]))
        out.append(diagonal.sum(1))
    return torch.cat(out) if len(out) > 1 else out[0]


def _gather_windows(images: Tensor, origins: Tensor, win_h: int, win_w: int) -> Tensor:
    """Crop a ``win_h×win_w`` window at each of ``origins`` (``N×A×2``): ``N×A×C×win_h×win_w``.

    One ``gather`` of flat indices (channel, row, column) into each image: no loop, and the result
    comes out contiguous in the layout the correlation reads.
    """
    n, c, h, w = images.shape
    device = images.device
    rows = origins[..., 0, None] + torch.arange(win_h, device=device)  # N×A×wh
    cols = origins[..., 1, None] + torch.arange(win_w, device=device)  # N×A×ww
    pixel = rows[..., :, None] * w + cols[..., None, :]  # N×A×wh×ww
    channel = torch.arange(c, device=device)[:, None, None] * (h * w)
    index = (channel + pixel[:, :, None]).reshape(n, -1)  # N×(A·C·wh·ww)
    return images.reshape(n, c * h * w).gather(1, index).reshape(n, origins.shape[1], c, win_h, win_w)


def crop_patches(images: Tensor, positions: Tensor, patch_size: int) -> Tensor:
    """The patches at ``positions`` (``N×...×2`` top-left corners): ``N×...×C×patch×patch``."""
    n = images.shape[0]
    lead = positions.shape[1:-1]
    flat = positions.reshape(n, -1, 2)
    patches = _gather_windows(images, flat, patch_size, patch_size)
    return patches.reshape(n, *lead, *patches.shape[2:])


def _top_k_raster_ties(dist: Tensor, k: int, farthest: bool) -> Tensor:
    """Indices of the ``k`` smallest (largest) of each row of non-negative float32 ``dist``, equal
    values in increasing index order: the tie rule, exactly.

    A non-negative float's bit pattern, read as an integer, orders like the float; shifted left and
    combined with the index (or its complement, for the largest) it gives unique int64 keys, so one
    ``topk`` returns the order a stable sort would, about 4× faster than sorting every candidate.
    """
    count = dist.shape[-1]
    shift = max(1, (count - 1).bit_length())
    index = torch.arange(count, device=dist.device)
    keys = dist.contiguous().view(torch.int32).long() << shift
    keys = keys | ((count - 1 - index) if farthest else index)
    return torch.topk(keys, k, dim=-1, largest=farthest, sorted=True).indices


def block_match(images: Tensor, anchors: Tensor, k: int, *, patch_size: int = 16, window: int = 40,
                stride: int = 1, farthest: bool = False) -> Matches:
    """Eq. (9) block matching: the ``k`` nearest (or, ``farthest=True``, farthest) candidate patches of
    each anchor patch within its search window. See the module docstring for the window and tie rule.

    ``images`` ``N×C×H×W`` (any float dtype; computed in float32), ``anchors`` ``N×A×2`` int64 top-left
    corners. Runs on the images' device; gradients do not flow (sampling only).
    """
    _check_images_and_anchors(images, anchors, patch_size)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n, c, h, w = images.shape
    a = anchors.shape[1]
    origins, win_h, win_w = window_origin(anchors, (h, w), patch_size, window)
    rows, cols = (win_h - patch_size) // stride + 1, (win_w - patch_size) // stride + 1
    if not 1 <= k <= rows * cols:
        raise ValueError(f"k={k} must be between 1 and the {rows * cols} candidates of a "
                         f"{win_h}×{win_w} window ({patch_size}×{patch_size} patches, stride {stride})")
    # float32 even inside a caller's bf16 autocast: bf16 products would reorder close distances.
    with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
        images = images.detach().float()
        if a == 0:
            empty = torch.empty(n, 0, k, device=images.device)
            return Matches(torch.empty(n, 0, k, 2, dtype=torch.int64, device=images.device), empty)
        windows = _gather_windows(images, origins, win_h, win_w).reshape(n * a, c, win_h, win_w)
        patches = crop_patches(images, anchors[:, :, None], patch_size).reshape(n * a, c, patch_size, patch_size)
        chunk = None if images.device.type == "cuda" else _CPU_CHUNK_BYTES
        cross = _window_correlation(windows, patches, chunk)[:, ::stride, ::stride]  # (N·A)×rows×cols
        # |q|^2 of every candidate: box sums of squared intensities, over the windows when they hold fewer
        # pixels than the images (few anchors), else over each image once, read at the candidates. |p|^2 of
        # the anchor is one number per anchor: it shifts all its distances alike, never their order.
        if a * win_h * win_w < h * w:
            energy = _box_sum(windows.square().sum(1), patch_size)[:, ::stride, ::stride]
        else:
            every = _box_sum(images.square().sum(1), patch_size)  # N×(H-P+1)×(W-P+1)
            cand_y = origins[..., 0, None] + stride * torch.arange(rows, device=images.device)  # N×A×rows
            cand_x = origins[..., 1, None] + stride * torch.arange(cols, device=images.device)  # N×A×cols
            batch = torch.arange(n, device=images.device)[:, None, None, None]
            energy = every[batch, cand_y[..., :, None], cand_x[..., None, :]].reshape(n * a, rows, cols)
        anchor_energy = patches.square().sum((1, 2, 3))
        dist = (anchor_energy[:, None, None] + energy - 2.0 * cross).clamp_min(0.0).reshape(n, a, rows * cols)
        order = _top_k_raster_ties(dist + 0.0, k, farthest)  # + 0.0 turns a -0.0 into +0.0
        chosen = dist.gather(-1, order)
        pos_y = origins[..., 0, None] + stride * torch.div(order, cols, rounding_mode="floor")
        pos_x = origins[..., 1, None] + stride * (order % cols)
    return Matches(torch.stack([pos_y, pos_x], dim=-1), chosen)


def neighbour_patches(anchors: Tensor, k: int, image_hw: tuple[int, int], patch_size: int = 16,
                      include_anchor: bool = True) -> Tensor:
    """Table 3's neighbour sampling: the anchor and its 8 touching neighbour patches (a 3×3 grid of
    ``patch``-sized cells centred on the anchor), ``N×A×k×2``.

    The grid is shifted inside the image at the borders (so the 8 neighbours stay distinct); the cell
    that then lies nearest the anchor stands for the anchor. Cells are ordered by their distance to the
    anchor (the anchor first when ``include_anchor``, then the 4 edge neighbours, then the corners),
    ties in raster order. ``k`` is at most 9 with the anchor, 8 without.
    """
    h, w = image_hw
    if 3 * patch_size > min(h, w):
        raise ValueError(f"a 3×3 grid of {patch_size}-pixel patches does not fit a {h}×{w} image")
    limit = 9 if include_anchor else 8
    if not 1 <= k <= limit:
        raise ValueError(f"neighbour sampling gives at most {limit} patches, asked for k={k}")
    origin_y = (anchors[..., 0] - patch_size).clamp(0, h - 3 * patch_size)
    origin_x = (anchors[..., 1] - patch_size).clamp(0, w - 3 * patch_size)
    steps = torch.arange(3, device=anchors.device) * patch_size
    lead = anchors.shape[:-1]
    cell_y = (origin_y[..., None, None] + steps[:, None]).expand(*lead, 3, 3).reshape(*lead, 9)
    cell_x = (origin_x[..., None, None] + steps[None, :]).expand(*lead, 3, 3).reshape(*lead, 9)
    cells = torch.stack([cell_y, cell_x], dim=-1)  # N×A×9×2 in raster order
    spread = (cells - anchors[..., None, :]).square().sum(-1)
    order = torch.sort(spread, dim=-1, stable=True).indices
    if not include_anchor:
        order = order[..., 1:]
    return cells.gather(-2, order[..., :k, None].expand(*order.shape[:-1], k, 2))


def random_anchors(batch: int, count: int, image_hw: tuple[int, int], patch_size: int = 16, *,
                   generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """``count`` uniformly random anchor patches per image, ``batch×count×2`` top-left corners.

    Drawn on the CPU from ``generator`` (reproducible, independent of the device) and moved to ``device``.
    """
    h, w = image_hw
    if patch_size > min(h, w):
        raise ValueError(f"patch_size {patch_size} does not fit images of {h}×{w}")
    y = torch.randint(0, h - patch_size + 1, (batch, count), generator=generator)
    x = torch.randint(0, w - patch_size + 1, (batch, count), generator=generator)
    return torch.stack([y, x], dim=-1).to(device)


def random_patches(anchors: Tensor, k: int, image_hw: tuple[int, int], patch_size: int = 16, *,
                   include_anchor: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """Table 3's random sampling: ``k`` patches drawn uniformly from the whole image (the anchor first
    when ``include_anchor``), ``N×A×k×2``."""
    n, a = anchors.shape[:2]
    drawn = random_anchors(n * a, k - int(include_anchor), image_hw, patch_size, generator=generator,
                           device=anchors.device).reshape(n, a, -1, 2)
    return torch.cat([anchors[:, :, None], drawn], dim=2) if include_anchor else drawn


def sample_patches(images: Tensor, anchors: Tensor, strategy: str, k: int, *, patch_size: int = 16,
                   window: int = 40, stride: int = 1, farthest: bool = False, include_anchor: bool = True,
                   generator: torch.Generator | None = None) -> Tensor:
    """``k`` patches per anchor by one of Table 3's strategies (:data:`STRATEGIES`), ``N×A×k×2``.

    ``nonlocal``: Eq. (9) block matching (nearest, or reverse non-local with ``farthest=True``; the anchor
    is a candidate, so it comes first among the nearest unless an identical patch precedes it in raster
    order); ``neighbour``: :func:`neighbour_patches`; ``random``: :func:`random_patches`.
    ``include_anchor`` applies to the neighbour and random strategies.
    """
    h, w = images.shape[-2:]
    if strategy == "nonlocal":
        return block_match(images, anchors, k, patch_size=patch_size, window=window, stride=stride,
                           farthest=farthest).positions
    if farthest:
        raise ValueError(f"farthest=True (reverse non-local) applies to the 'nonlocal' strategy only, not {strategy!r}")
    if strategy == "neighbour":
        return neighbour_patches(anchors, k, (h, w), patch_size, include_anchor=include_anchor)
    if strategy == "random":
        return random_patches(anchors, k, (h, w), patch_size, include_anchor=include_anchor, generator=generator)
    raise ValueError(f"unknown sampling strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")


def patch_features(features: Tensor, positions: Tensor, patch_size: int, image_hw: tuple[int, int]) -> Tensor:
    """The encoder feature ``E(p)`` of each patch: the mean of a feature map over the patch's footprint.

    ``features`` ``N×C×h×w`` is an encoder's map of the whole ``image_hw`` image (any stride: a
    discriminator layer at 1/8 resolution or a generator layer at full resolution); the patch
    ``[y, y+P)×[x, x+P)`` covers ``[y·s, (y+P)·s)`` in feature cells (``s = h / H``, at least one cell).
    Returns ``N×...×C`` for ``positions`` ``N×...×2``. Differentiable in ``features`` (a box mean via
    an integral image, computed in float32 so bf16 maps keep their precision).
    """
    n, c, fh, fw = features.shape
    h, w = image_hw
    lead = positions.shape[1:-1]
    flat = positions.reshape(n, -1, 2)
    scale_y, scale_x = fh / h, fw / w
    size_y = max(1, round(patch_size * scale_y))
    size_x = max(1, round(patch_size * scale_x))
    y0 = torch.floor(flat[..., 0] * scale_y).long().clamp(0, fh - size_y)
    x0 = torch.floor(flat[..., 1] * scale_x).long().clamp(0, fw - size_x)
    integral = F.pad(features.float().cumsum(2).cumsum(3), (1, 0, 1, 0))  # N×C×(h+1)×(w+1)
    batch = torch.arange(n, device=features.device)[:, None]

    def corner(y: Tensor, x: Tensor) -> Tensor:
        return integral[batch, :, y, x]  # N×M×C

    total = corner(y0 + size_y, x0 + size_x) - corner(y0, x0 + size_x) - corner(y0 + size_y, x0) + corner(y0, x0)
    return (total / (size_y * size_x)).reshape(n, *lead, c)
