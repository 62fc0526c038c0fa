"""Non-local block matching (ANLCL Eq. (9)) and Table 3's sampling strategies, against a naive looped
reference written here: one Python loop over images, anchors and every candidate position."""

from __future__ import annotations

import pytest
import torch

from derainlib.nonlocal_sampling import (
    block_match,
    crop_patches,
    neighbour_patches,
    patch_features,
    random_anchors,
    random_patches,
    sample_patches,
)


def naive_block_match(images: torch.Tensor, anchors: torch.Tensor, k: int, patch: int = 16, window: int = 40,
                      stride: int = 1, farthest: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition, looped: the window centred on the anchor and shifted inside the image, every
    candidate's squared L2 distance, sorted by (distance, raster index) (farthest: by (-distance, index))."""
    n, _, h, w = images.shape
    positions, distances = [], []
    for b in range(n):
        rows_p, rows_d = [], []
        for ay, ax in anchors[b].tolist():
            wh, ww = min(window, h), min(window, w)
            oy = min(max(ay - (window - patch) // 2, 0), h - wh)
            ox = min(max(ax - (window - patch) // 2, 0), w - ww)
            anchor = images[b, :, ay:ay + patch, ax:ax + patch].double()
            found = []
            for y in range(oy, oy + wh - patch + 1, stride):
                for x in range(ox, ox + ww - patch + 1, stride):
                    d = float(((anchor - images[b, :, y:y + patch, x:x + patch].double()) ** 2).sum())
                    found.append((-d if farthest else d, len(found), y, x, d))
            found.sort()
            rows_p.append([(y, x) for _, _, y, x, _ in found[:k]])
            rows_d.append([d for *_, d in found[:k]])
        positions.append(rows_p)
        distances.append(rows_d)
    return torch.tensor(positions), torch.tensor(distances, dtype=torch.float64)


def integer_image(n: int, h: int, w: int, levels: int = 16, seed: int = 0) -> torch.Tensor:
    """Integer-valued intensities: every distance sum is exact in float32, so ties are exact too."""
    return torch.randint(0, levels, (n, 3, h, w), generator=torch.Generator().manual_seed(seed)).float()


def border_anchors(n: int, count: int, h: int, w: int, patch: int = 16, seed: int = 1) -> torch.Tensor:
    anchors = random_anchors(n, count, (h, w), patch, generator=torch.Generator().manual_seed(seed))
    corners = torch.tensor([[0, 0], [h - patch, w - patch], [0, w - patch], [h - patch, 3]])
    anchors[:, :4] = corners
    return anchors


@pytest.mark.parametrize("farthest", [False, True])
def test_random_integer_images_match_the_looped_reference_including_borders(farthest):
    images = integer_image(2, 56, 64)
    anchors = border_anchors(2, 7, 56, 64)
    ours = block_match(images, anchors, 12, farthest=farthest)
    positions, distances = naive_block_match(images, anchors, 12, farthest=farthest)
    assert torch.equal(ours.positions, positions)
    assert torch.equal(ours.distances.double(), distances)  # exact on integer images


@pytest.mark.parametrize("farthest", [False, True])
def test_few_anchors_on_a_large_image_match_too(farthest):
    # Few anchors: the candidates' |q|^2 come from the windows, not the whole image (the other branch).
    images = integer_image(2, 96, 90, seed=11)
    anchors = border_anchors(2, 4, 96, 90)[:, :2]  # two corners
    ours = block_match(images, anchors, 16, farthest=farthest)
    positions, distances = naive_block_match(images, anchors, 16, farthest=farthest)
    assert torch.equal(ours.positions, positions) and torch.equal(ours.distances.double(), distances)


@pytest.mark.parametrize("farthest", [False, True])
def test_structured_images_with_ties_follow_the_raster_order_rule(farthest):
    # A periodic tiling repeats every patch many times (exact ties everywhere); a constant image ties all.
    tile = integer_image(1, 8, 8, seed=3)
    periodic = tile.repeat(1, 1, 7, 7)[..., :52, :50]
    constant = torch.full((1, 3, 52, 50), 5.0)
    stripes = (torch.arange(50) % 5 == 0).float().expand(1, 3, 52, 50) * 9
    images = torch.cat([periodic, constant, stripes])
    anchors = border_anchors(3, 6, 52, 50)
    ours = block_match(images, anchors, 30, farthest=farthest)
    positions, _ = naive_block_match(images, anchors, 30, farthest=farthest)
    assert torch.equal(ours.positions, positions)
    # On the constant image every distance is 0, so the rule alone orders them: the window's first 30 in raster order.
    assert (ours.distances[1] == 0).all()


def test_the_anchor_comes_first_when_no_identical_patch_precedes_it():
    images = integer_image(1, 64, 64, levels=256)
    anchors = torch.tensor([[[24, 24], [0, 0], [48, 30]]])
    ours = block_match(images, anchors, 8)
    assert torch.equal(ours.positions[:, :, 0], anchors) and (ours.distances[:, :, 0] == 0).all()
    assert (ours.distances.diff(dim=-1) >= 0).all()
    farthest = block_match(images, anchors, 8, farthest=True)
    assert (farthest.distances.diff(dim=-1) <= 0).all() and (farthest.distances > 0).all()


def test_bf16_autocast_around_the_search_changes_nothing():
    images = integer_image(1, 48, 48).to(torch.bfloat16)  # levels 0..15 are exact in bf16
    anchors = border_anchors(1, 4, 48, 48)
    plain = block_match(images.float(), anchors, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = block_match(images, anchors, 10)
    assert torch.equal(autocast.positions, plain.positions) and autocast.distances.dtype == torch.float32


def test_stride_and_a_window_larger_than_the_image():
    images = integer_image(1, 30, 36)  # smaller than the 40×40 window on both sides: the whole image is searched
    anchors = border_anchors(1, 5, 30, 36)
    for stride in (1, 3):
        ours = block_match(images, anchors, 6, stride=stride)
        positions, _ = naive_block_match(images, anchors, 6, stride=stride)
        assert torch.equal(ours.positions, positions)


def test_real_valued_images_agree_with_the_reference_up_to_float_rounding():
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    anchors = border_anchors(1, 6, 64, 64)
    ours = block_match(images, anchors, 20)
    positions, distances = naive_block_match(images, anchors, 20)
    assert torch.allclose(ours.distances.double(), distances, rtol=1e-5, atol=1e-3)
    # Where two sets differ at all, it is by a near-tie: the distances chosen are the reference's.
    assert (ours.positions == positions).all(-1).float().mean() > 0.9


def test_bad_inputs_are_refused_with_a_clear_message():
    images = integer_image(1, 40, 40)
    with pytest.raises(ValueError, match="outside the 40×40 image"):
        block_match(images, torch.tensor([[[30, 0]]]), 4)
    with pytest.raises(ValueError, match="between 1 and the 625 candidates"):
        block_match(images, torch.tensor([[[0, 0]]]), 626)
    with pytest.raises(ValueError, match="int64"):
        block_match(images, torch.zeros(1, 1, 2, dtype=torch.int32), 4)
    with pytest.raises(ValueError, match="unknown sampling strategy 'grid'"):
        sample_patches(images, torch.zeros(1, 1, 2, dtype=torch.long), "grid", 4)


def test_neighbour_sampling_gives_the_touching_patches_and_stays_inside_at_borders():
    anchors = torch.tensor([[[32, 40], [0, 0], [64, 70]]])  # centre, top-left corner, bottom-right corner of 80×86
    cells = neighbour_patches(anchors, 9, (80, 86), 16)
    centre = {tuple(p) for p in cells[0, 0].tolist()}
    assert centre == {(32 + dy, 40 + dx) for dy in (-16, 0, 16) for dx in (-16, 0, 16)}
    assert cells[0, 0, 0].tolist() == [32, 40]  # the anchor first, then the 4 edge neighbours
    assert {tuple(p) for p in cells[0, 0, 1:5].tolist()} == {(16, 40), (48, 40), (32, 24), (32, 56)}
    for group in cells[0, 1:]:
        assert len({tuple(p) for p in group.tolist()}) == 9  # distinct even at the corners
        assert group.min() >= 0 and (group[:, 0] <= 80 - 16).all() and (group[:, 1] <= 86 - 16).all()
    assert cells[0, 1, 0].tolist() == [0, 0]
    eight = neighbour_patches(anchors, 8, (80, 86), 16, include_anchor=False)
    assert not (eight[0, 0] == anchors[0, 0]).all(-1).any()


def test_random_sampling_is_seeded_and_keeps_the_anchor_first():
    anchors = torch.tensor([[[5, 6], [20, 1]]])
    one = random_patches(anchors, 8, (64, 64), generator=torch.Generator().manual_seed(0))
    two = random_patches(anchors, 8, (64, 64), generator=torch.Generator().manual_seed(0))
    assert torch.equal(one, two) and one.shape == (1, 2, 8, 2)
    assert torch.equal(one[:, :, 0], anchors) and one.min() >= 0 and one.max() <= 48
    with pytest.raises(ValueError, match="reverse non-local"):
        sample_patches(torch.zeros(1, 3, 64, 64), anchors, "random", 4, farthest=True)


def test_crop_patches_and_patch_features_read_the_right_pixels():
    images = torch.rand(2, 3, 48, 40)
    positions = torch.tensor([[[[0, 0], [32, 24]]], [[[5, 7], [1, 2]]]])  # N×A×k×2
    patches = crop_patches(images, positions, 16)
    assert patches.shape == (2, 1, 2, 3, 16, 16)
    assert torch.equal(patches[1, 0, 0], images[1, :, 5:21, 7:23])
    # Full resolution: the footprint mean; half resolution: the half-size footprint.
    full = patch_features(images, positions, 16, (48, 40))
    assert torch.allclose(full[1, 0, 0], images[1, :, 5:21, 7:23].mean((-1, -2)), atol=1e-6)
    half = torch.rand(2, 5, 24, 20, requires_grad=True)
    feats = patch_features(half, positions, 16, (48, 40))
    assert torch.allclose(feats[0, 0, 1], half[0, :, 16:24, 12:20].mean((-1, -2)), atol=1e-6)
    feats.sum().backward()
    assert half.grad is not None and half.grad[0, :, 0, 0].abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    images = integer_image(2, 64, 64)
    anchors = border_anchors(2, 9, 64, 64)
    cpu = block_match(images, anchors, 16, farthest=True)
    gpu = block_match(images.cuda(), anchors.cuda(), 16, farthest=True)
    assert torch.equal(gpu.positions.cpu(), cpu.positions)
