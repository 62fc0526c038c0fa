"""ANLCL's published numbers, transcribed from the paper's tables, and the settings of their rows.

From Chang et al., "Unsupervised Deraining: Where Asymmetric Contrastive Learning Meets Self-similarity"
(ANLCL): Tables 3, 4, 5, 6, 8 and 9 (PSNR dB, SSIM; NIQE in Table 4; the paper does not say whether PSNR
is on Y or RGB). Tables 3-5 and 9 are ablations on the paper's own real dataset; Table 6 is the ANLCL loss
added to supervised networks on a synthetic dataset.

**Which rows train the asymmetric term.** Table 3's best row (non-local / non-local, 26.46 / 0.8666),
Table 4's discriminator row and Table 9's (8, 256) cell are the same numbers as Table 5's row *without*
``L_AsyCon``; §5.3 says Table 3's runs "are all performed on the layer contrastive". So Tables 3, 4 and 9
are the NLCL setting (every term but the asymmetric one), and only Table 5 varies the asymmetric term.
"""

from __future__ import annotations

#: Table 3: (positives, negatives) -> (PSNR, SSIM); our strategy names (derainlib.nonlocal_sampling).
PAPER_TABLE_3: dict[tuple[str, str], tuple[float, float]] = {
    ("random", "random"): (25.83, 0.8471),
    ("neighbour", "random"): (26.03, 0.8491),
    ("neighbour", "neighbour"): (25.97, 0.8477),
    ("nonlocal", "random"): (26.18, 0.8489),
    ("random", "nonlocal"): (26.16, 0.8531),
    ("nonlocal", "nonlocal"): (26.46, 0.8666),
}

#: Table 4: layer-contrastive encoder (derainlib.models.anlcl.ENCODERS) -> (PSNR, SSIM, NIQE).
PAPER_TABLE_4: dict[str, tuple[float, float, float]] = {
    "image_generator": (24.86, 0.8046, 3.83),
    "image_rain_generators": (24.12, 0.8023, 3.95),
    "discriminator": (26.46, 0.8666, 3.67),
}

#: Table 5's columns in the paper's order, as our term names: L_1 is the rain prior ``‖R‖₁``, L_adv the GAN
#: prior on B, L_MSE the self-consistency ``‖B + R − O‖²`` (Eq. (2)-(3)); then Eq. (6), (5) and (8).
TABLE_5_COLUMNS: tuple[tuple[str, str], ...] = (
    ("L1", "rain_sparsity"), ("Ladv", "background_prior"), ("LMSE", "consistency"),
    ("LocCon", "location"), ("LayerCon", "layer"), ("AsyCon", "asymmetric"))

#: Table 5: which of :data:`TABLE_5_COLUMNS` each row keeps (1) -> (PSNR, SSIM), in the paper's row order.
PAPER_TABLE_5: dict[tuple[int, ...], tuple[float, float]] = {
    (0, 1, 1, 1, 1, 1): (27.07, 0.9078),
    (1, 0, 1, 1, 1, 1): (22.79, 0.7948),
    (1, 1, 0, 1, 1, 1): (26.91, 0.8930),
    (1, 1, 1, 0, 1, 1): (26.45, 0.8797),
    (1, 1, 1, 1, 0, 1): (25.83, 0.8733),
    (1, 1, 1, 1, 1, 0): (26.46, 0.8666),
    (1, 1, 1, 1, 0, 0): (24.98, 0.8426),
    (1, 1, 1, 0, 0, 0): (23.55, 0.8132),
    (1, 1, 1, 1, 1, 1): (27.42, 0.9123),
}

#: Table 6: supervised network -> ((PSNR, SSIM) baseline, (PSNR, SSIM) with the ANLCL loss).
PAPER_TABLE_6: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "PReNet": ((35.16, 0.9762), (36.34, 0.9814)),
    "RCDNet": ((36.65, 0.9805), (37.46, 0.9869)),
}

#: Table 8: method -> (size MB, seconds per 256² image); DSC has no network (size None). ANLCL's time is on
#: an RTX 3090 (§4.6; the others' hardware is not stated).
PAPER_TABLE_8: dict[str, tuple[float | None, float]] = {
    "DSC": (None, 33.95), "JORDER-E": (16.7, 0.1280), "DeCycleGAN": (43.6, 0.0379), "UDGNet": (5.7, 0.0170),
    "DCD-GAN": (11.4, 0.0452), "CUT": (45.6, 0.0135), "ANLCL": (2.6, 0.0098),
}

#: Table 9's grid: positives N_B (rows) and negatives N_R (columns), at 256² crops.
PAPER_TABLE_9_POSITIVES: tuple[int, ...] = (4, 8, 16, 32)
PAPER_TABLE_9_NEGATIVES: tuple[int, ...] = (64, 128, 256, 512)
#: Table 9: (N_B, N_R) -> PSNR.
PAPER_TABLE_9: dict[tuple[int, int], float] = {
    (b, r): value
    for b, row in zip(PAPER_TABLE_9_POSITIVES, ((23.21, 26.11, 26.19, 26.30), (24.55, 26.30, 26.46, 26.42),
                                                (24.54, 25.96, 26.02, 26.11), (23.49, 25.02, 25.40, 25.37)))
    for r, value in zip(PAPER_TABLE_9_NEGATIVES, row)
}
#: The paper's N_R at its 256² crops (§4.6); a profile with smaller crops scales Table 9's columns by its own.
PAPER_NUM_NEGATIVES = 256

__all__ = ["PAPER_NUM_NEGATIVES", "PAPER_TABLE_3", "PAPER_TABLE_4", "PAPER_TABLE_5", "PAPER_TABLE_6", "PAPER_TABLE_8",
           "PAPER_TABLE_9", "PAPER_TABLE_9_NEGATIVES", "PAPER_TABLE_9_POSITIVES", "TABLE_5_COLUMNS"]
