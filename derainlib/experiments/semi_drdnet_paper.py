"""Semi-DRDNet's published numbers and the names of its tables' rows.

From Shen et al., "Detail-recovery Image Deraining via Dual Sample-augmented Contrastive Learning"
(Semi-DRDNet): Tables II, III, IV, V and VII (PSNR dB, SSIM; the paper does not say whether Y or RGB),
and the loss combinations of Fig. 13.
"""

from __future__ import annotations

DATASETS = ("rain200l", "rain200h", "rain800")  # the paper's three labeled training sets
SUPERVISED_VARIANTS = ("BL", "BL+SE", "BL+SE+DB", "BL+SE+RB", "BL+SE+SDCAB")
TABLE_II_VARIANTS = (*SUPERVISED_VARIANTS, "Semi-DRDNet")
TABLE_VII_SETTINGS = ("standard", "aug_pos", "aug_neg", "dual")

PAPER_TABLE_II = {  # dataset -> variant -> (PSNR, SSIM)
    "rain200l": dict(zip(TABLE_II_VARIANTS, [(35.69, 0.9782), (36.25, 0.9796), (36.93, 0.9804),
                                             (37.16, 0.9876), (37.52, 0.9880), (40.66, 0.9885)])),
    "rain200h": dict(zip(TABLE_II_VARIANTS, [(26.33, 0.8323), (26.79, 0.8441), (27.45, 0.9194),
                                             (27.32, 0.9086), (28.32, 0.9221), (31.32, 0.9240)])),
    "rain800": dict(zip(TABLE_II_VARIANTS, [(25.94, 0.8132), (26.35, 0.8217), (26.39, 0.8945),
                                            (26.45, 0.8978), (26.56, 0.9024), (27.73, 0.9055)])),
}

PAPER_TABLE_III = {  # (M, blocks per branch) -> (PSNR, SSIM) on Rain200H; D = blocks + 3
    (16, 8): (27.67, 0.9138), (32, 8): (28.82, 0.9164), (64, 8): (29.96, 0.9188),
    (16, 12): (28.70, 0.9156), (32, 12): (29.91, 0.9177), (64, 12): (30.67, 0.9203),
    (16, 16): (29.38, 0.9175), (32, 16): (30.13, 0.9199), (64, 16): (31.32, 0.9240),
}
#: Table III's grid: widths M and residual blocks per branch (D = blocks + 3).
PAPER_TABLE_III_GRID = ((16, 32, 64), (8, 12, 16))

PAPER_TABLE_IV = {  # dataset -> network -> (PSNR, seconds per image)
    "rain200h": {"DDN": (24.64, 0.03), "DDN+DRN": (25.92, 0.15)},
    "rain800": {"DDN": (24.04, 0.05), "DDN+DRN": (25.13, 0.14)},
}

PAPER_TABLE_V = {  # dataset -> DRN block -> (PSNR, seconds per image)
    # The text says MSARR drops Rain200H "from 31.32 dB to 28.64 dB"; the table says 28.92.
    "rain200h": {"sdcab": (31.32, 0.48), "msarr": (28.92, 0.42)},
    "rain800": {"sdcab": (27.73, 0.64), "msarr": (26.29, 0.58)},
}

PAPER_TABLE_VII = {  # dataset -> setting -> PSNR
    "rain200l": dict(zip(TABLE_VII_SETTINGS, [38.05, 39.86, 39.15, 40.66])),
    "rain200h": dict(zip(TABLE_VII_SETTINGS, [28.96, 30.02, 29.76, 31.32])),
    "rain800": dict(zip(TABLE_VII_SETTINGS, [26.82, 27.21, 27.18, 27.73])),
}

FIG13_COMBINATIONS = ("L_d", "L_d+L_r", "L_d+L_r+L_dual(sup)", "L_sup+L_unsup (full)")
