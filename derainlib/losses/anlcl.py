"""ANLCL's losses, one function per equation: decomposition (Eq. (2)–(3)), layer contrastive (Eq. (5)),
location contrastive (Eq. (6)), margin (Eq. (7)), asymmetric contrastive (Eq. (8)), and their weighted
sum (Eq. (4)).

Paper: Chang et al., "Unsupervised Deraining: Where Asymmetric Contrastive Learning Meets
Self-similarity" (ANLCL). Feature conventions (as :class:`derainlib.models.anlcl.ANLCLNetworks` gives them):

- Contrastive features are L2-normalised, shape ``...×N×D``; leading dimensions are *groups* (e.g.
  images × anchors), every loss is averaged over them.
- **Queries and keys (MoCo, §4.6).** In Eq. (5), (7) and (8) the anchor side of each pair is a *query*
  from the online encoder (gradients reach the generators through it) and the other side a *key* from
  the momentum encoder (no gradient); pass the same tensor twice to use one encoder.

Deviations from the printed equations, each kept as an option:

- Eq. (5) and (6) are printed as ratios of exponentials without a log. The text describes InfoNCE
  (a contrastive loss in the sense of SimCLR and CUT), and the public NLCL code is the log form, so the
  default ``form="infonce"`` is ``-log(exp(pos) / (exp(pos) + sum exp(neg)))``, the positive included
  in the denominator (bounded below by 0), averaged over pairs. ``form="printed"`` is the printed
  expression (Eq. (5)'s ``-1/N_B sum_k sum_i``; Eq. (6) negated, since it is printed as a quantity to
  maximise).
- Eq. (7) is printed as a sum over all ``N_R^2 N_B^2`` pairs; the default ``reduction="mean"`` averages
  it (the sum is 4 million hinge terms per group at N_R = 256, N_B = 8).
- Eq. (3) is printed as the log-likelihood GAN; the public code (and :func:`lsgan_loss`) uses the
  least-squares GAN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from derainlib.nonlocal_sampling import block_match, crop_patches, random_anchors, sample_patches
from derainlib.options import check_choice

__all__ = [
    "ANLCLLossWeights",
    "CONTRASTIVE_FORMS",
    "GREY_WEIGHTS",
    "ContrastiveSampling",
    "WEIGHT_SYMBOLS",
    "anlcl_objective",
    "asymmetric_contrastive_loss",
    "asymmetry_sign",
    "contrastive_terms",
    "decomposition_loss",
    "discriminator_loss",
    "feature_distances",
    "layer_contrastive_loss",
    "location_contrastive_loss",
    "lsgan_loss",
    "margin_loss",
    "patch_entropies",
    "pretraining_loss",
]

CONTRASTIVE_FORMS: tuple[str, ...] = ("infonce", "printed")


@dataclass(frozen=True)
class ANLCLLossWeights:
    """The weight of every term of Eq. (4): the one table of ANLCL's loss weights.

    The paper sets "λ, δ, μ, σ and γ" to 0.1, 1, 1, 1, 0.01 (§4.6) without saying which weight goes with
    which term. Our mapping, and why:

    ======================  ======  =====  ==========================================================
    term                    symbol  value  why
    ======================  ======  =====  ==========================================================
    ``‖B + R − O‖²``         —       1      Eq. (2) writes the data term unweighted (public code: 1×MSE)
    ``‖R‖₁``  (P_r)          λ       0.1    Eq. (2) itself names it: ``λ P_r(R)`` (public code: 0.1×L1)
    GAN prior on B (P_b)     δ       1      Eq. (2) itself names it: ``δ P_b(B)``
    L_LayerCon, Eq. (5)      μ       1      next in the paper's order; public code weights it 1
    L_LocCon, Eq. (6)        σ       1      next in the paper's order; public code weights it 1
    L_AsyCon, Eq. (8) / (7)  γ       0.01   the last symbol, for the term the extension adds (§4.3);
                                            its printed form is a ratio of sums of N_R² and N_B²
                                            exponentials, far larger than the log-form terms
    ======================  ======  =====  ==========================================================

    Only γ's placement changes the objective: μ and σ are both 1. The two ``supervised_*`` weights belong
    to stage 1 (:func:`pretraining_loss`), which the paper describes without numbers.
    """

    consistency: float = 1.0
    rain_sparsity: float = 0.1  # λ
    background_prior: float = 1.0  # δ
    layer: float = 1.0  # μ
    location: float = 1.0  # σ
    asymmetric: float = 0.01  # γ
    # Stage 1 (§4.6: supervised pretraining of both generators with the GAN, no contrastive loss); the paper
    # gives neither the form nor the weights of its supervised terms: L1 on each layer, weighted 100 against
    # the GAN's 1 as in pix2pix (paired image translation with a PatchGAN). At weight 1 the GAN term dominated
    # and |B − B_gt| stalled at the cpu study's scale (docs/anlcl.md, "Stage 1 at the cpu scale").
    supervised_background: float = 100.0
    supervised_rain: float = 100.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


#: Which of the paper's symbols each :class:`ANLCLLossWeights` field stands for (see its table).
WEIGHT_SYMBOLS: dict[str, str] = {"consistency": "", "rain_sparsity": "λ", "background_prior": "δ", "layer": "μ",
                                  "location": "σ", "asymmetric": "γ", "supervised_background": "",
                                  "supervised_rain": ""}


def _check_form(form: str) -> None:
    if form not in CONTRASTIVE_FORMS:
        raise ValueError(f"unknown form {form!r}; valid: {', '.join(CONTRASTIVE_FORMS)}")


# ----------------------------------------------------------------------------------- Eq. (2)-(3)


def lsgan_loss(prediction: Tensor, target_is_real: bool) -> Tensor:
    """Least-squares GAN loss (Mao et al.): ``mean((D(x) − 1)^2)`` for real, ``mean(D(x)^2)`` for fake."""
    target = 1.0 if target_is_real else 0.0
    return (prediction.float() - target).square().mean()


def discriminator_loss(real_prediction: Tensor, fake_prediction: Tensor) -> Tensor:
    """The discriminator's side of Eq. (3) in least squares: ``(LS(D(B_clean), 1) + LS(D(G_B(O)), 0)) / 2``.

    ``fake_prediction`` must come from a detached ``G_B(O)`` (the generators are not trained by this term).
    """
    return 0.5 * (lsgan_loss(real_prediction, True) + lsgan_loss(fake_prediction, False))


#: What Eq. (2)'s L1 rain prior P_r is taken on: the rain generator's output R (the paper's ``‖R‖₁``), or the
#: rain the image generator removes, O − B (the public NLCL code's ``0.1 * L1(O, B)``). The two agree only where
#: B + R = O holds exactly; the second also ties B to the input.
RAIN_PRIOR_TARGETS = ("rain", "residual")

#: How Eq. (2)'s two norms are read: ``"mean"`` averages ``‖B + R − O‖_F²`` and ``‖R‖₁`` over pixels, as every
#: other loss here and the public NLCL code's MSE and L1 do; ``"sum"`` takes them as printed, sums over each
#: image's pixels (averaged over the batch), which weights them C·H·W times more against the GAN and the
#: contrastive terms.
NORM_READINGS = ("mean", "sum")


def decomposition_loss(background: Tensor, rain: Tensor, rainy: Tensor, fake_prediction: Tensor, *, norms: str,
                       rain_prior_on: str = "rain") -> dict[str, Tensor]:
    """Eq. (2)'s terms, unweighted: ``consistency = mean((B + R − O)^2)`` (the squared Frobenius norm,
    averaged over pixels), ``rain_sparsity = mean|R|`` (P_r, the L1 prior on the rain; ``mean|O − B|`` with
    ``rain_prior_on="residual"``, :data:`RAIN_PRIOR_TARGETS`), and ``background_prior`` = the generator's
    least-squares GAN term on ``D(G_B(O))`` (P_b, Eq. (3)), with ``norms="mean"``; ``norms="sum"`` sums the first
    two over each image's pixels instead (:data:`NORM_READINGS`; no default: the two differ by C·H·W). Weight them
    with :func:`anlcl_objective`.
    """
    if background.shape != rainy.shape or rain.shape != rainy.shape:
        raise ValueError(f"B {tuple(background.shape)}, R {tuple(rain.shape)} and O {tuple(rainy.shape)} must match")
    check_choice("rain_prior_on", rain_prior_on, RAIN_PRIOR_TARGETS)
    check_choice("norms", norms, NORM_READINGS)
    sparse = rain if rain_prior_on == "rain" else rainy - background
    pixels = rainy[0].numel() if norms == "sum" else 1  # a sum over an image's pixels is its mean times their count
    return {
        "consistency": (background.float() + rain.float() - rainy.float()).square().mean() * pixels,
        "rain_sparsity": sparse.float().abs().mean() * pixels,
        "background_prior": lsgan_loss(fake_prediction, True),
    }


def pretraining_loss(background: Tensor, rain: Tensor, rainy: Tensor, clean: Tensor,
                     fake_prediction: Tensor) -> dict[str, Tensor]:
    """Stage 1's terms (§4.6), unweighted: both generators supervised on a paired synthetic domain,
    ``supervised_background = mean|B − B_gt|`` and ``supervised_rain = mean|R − (O − B_gt)|``, with the GAN
    prior on B and the self-consistency of Eq. (2) (a mean over pixels, like the supervised terms it sits beside);
    no contrastive term. Weight with :func:`anlcl_objective`.
    """
    terms = decomposition_loss(background, rain, rainy, fake_prediction, norms="mean")
    if clean.shape != rainy.shape:
        raise ValueError(f"the clean target {tuple(clean.shape)} must match O {tuple(rainy.shape)}")
    return {
        "supervised_background": (background.float() - clean.float()).abs().mean(),
        "supervised_rain": (rain.float() - (rainy.float() - clean.float())).abs().mean(),
        "consistency": terms["consistency"],
        "background_prior": terms["background_prior"],
    }


# ----------------------------------------------------------------------------------- Eq. (5)


def _one_direction(anchor_query: Tensor, positive_key: Tensor, negative_key: Tensor, temperature: float,
                   form: str) -> Tensor:
    """One term of Eq. (5): anchors ``...×N_a×D``, positives ``...×N_a×D`` (the same layer), negatives
    ``...×N_n×D``."""
    positive = anchor_query @ positive_key.transpose(-1, -2) / temperature  # ...×N_a(i)×N_a(k)
    negative = anchor_query @ negative_key.transpose(-1, -2) / temperature  # ...×N_a(i)×N_n(j)
    negative_lse = torch.logsumexp(negative, dim=-1, keepdim=True)  # log sum_j exp(f_i·f_j/τ)
    if form == "infonce":
        # -log(e^pos / (e^pos + sum e^neg)) = softplus(LSE(neg) - pos), every (i, k) pair averaged
        return F.softplus(negative_lse - positive).mean(dim=(-2, -1))
    # printed: -(1/N_a) sum_k sum_i e^pos / sum_j e^neg
    return -torch.exp(positive - negative_lse).sum(dim=(-2, -1)) / positive.shape[-1]


def layer_contrastive_loss(image_query: Tensor, image_key: Tensor, rain_query: Tensor, rain_key: Tensor, *,
                           temperature: float = 0.77, form: str = "infonce") -> Tensor:
    """Eq. (5), bidirectional layer contrastive: image patches positive to each other with rain patches as
    negatives, plus the reverse (rain positive, image negative).

    ``image_*`` ``...×N_B×D`` are the features of an image-layer group (an anchor and its N_B − 1
    non-local neighbours in B), ``rain_*`` ``...×N_R×D`` those of a rain-layer group. The first term
    pairs every image query ``i`` with every image key ``k`` (k = i included: the momentum key of the
    same patch, as MoCo's positive) against all rain keys; the second term the same with the layers
    swapped. Temperature 0.77 is the paper's (§4.6), 0.07 the public code's.
    """
    _check_form(form)
    first = _one_direction(image_query, image_key, rain_key, temperature, form)
    second = _one_direction(rain_query, rain_key, image_key, temperature, form)
    return (first + second).mean()


# ----------------------------------------------------------------------------------- Eq. (6)


def location_contrastive_loss(query: Tensor, positive: Tensor, negatives: Tensor | None = None, *,
                              temperature: float = 0.07, form: str = "infonce") -> Tensor:
    """Eq. (6), location contrastive (CUT's PatchNCE): the derained patch ``v_B_i`` (query) against the
    rainy patch at the same location ``v_O_i`` (positive) and ``N`` rainy patches elsewhere (negatives).

    ``query`` and ``positive`` are ``...×A×D`` (A anchor locations per image). ``negatives`` ``...×A×N×D``
    are each anchor's own negatives, e.g. the features at its reverse non-local (farthest top-k) patches
    (§4.4); ``None`` uses CUT's: the other ``A − 1`` anchors of the same image. Positives and negatives
    are detached (CUT): the loss trains the derained side. Temperature 0.07 is CUT's and the public
    code's.
    """
    _check_form(form)
    positive = positive.detach()
    pos = (query * positive).sum(-1, keepdim=True) / temperature  # ...×A×1
    if negatives is None:
        every = query @ positive.transpose(-1, -2) / temperature  # ...×A×A, the diagonal is the positive
        eye = torch.eye(every.shape[-1], dtype=torch.bool, device=every.device)
        neg = every.masked_select(~eye).reshape(*every.shape[:-1], every.shape[-1] - 1)
    else:
        neg = (query[..., None, :] * negatives.detach()).sum(-1) / temperature  # ...×A×N
    logits = torch.cat([pos, neg], dim=-1)
    if form == "infonce":
        return (torch.logsumexp(logits, dim=-1) - logits[..., 0]).mean()
    return -torch.exp(logits[..., 0] - torch.logsumexp(logits, dim=-1)).mean()


# ----------------------------------------------------------------------------------- η of Eq. (7)-(8)
#
# §4.3 measures a patch's complexity by its entropy, -sum(p_i log2 p_i) with p the normalised histogram,
# as MATLAB's ``entropy`` does: grey (rgb2gray's weights), 8-bit levels, normalised histogram. These are
# the batched torch versions the losses call on sampled patches (``...×C×P×P``, as
# :func:`derainlib.nonlocal_sampling.crop_patches` returns them); on the same grey patches in [0, 1]
# they agree with :func:`derainlib.analysis.patch_asymmetry.patch_entropy`, which Fig. 6's analysis uses.

#: rgb2gray's weights (ITU-R BT.601 luma).
GREY_WEIGHTS: tuple[float, float, float] = (0.2989, 0.5870, 0.1140)


def _grey(patches: Tensor) -> Tensor:
    if patches.dim() < 3:
        raise ValueError(f"patches must be ...×C×P×P, got shape {tuple(patches.shape)}")
    channels = patches.shape[-3]
    if channels == 1:
        return patches[..., 0, :, :]
    if channels != 3:
        raise ValueError(f"patches must have 1 or 3 channels, got {channels}")
    weights = patches.new_tensor(GREY_WEIGHTS)
    return (patches * weights[:, None, None]).sum(-3)


def patch_entropies(patches: Tensor, value_range: tuple[float, float] = (0.0, 1.0), *, origin: float | None = None,
                  levels: int = 256) -> Tensor:
    """Entropy in bits of each patch's normalised grey histogram (§4.3): shape ``...``.

    Intensities are quantised to levels of width ``(high - low) / (levels - 1)`` (one 8-bit step for the
    default ``value_range`` (0, 1); use (-1, 1) for images scaled to [-1, 1]), counted from ``origin``
    (default ``low``). A *rain layer* ``O - B`` is a difference of two images, whose 8-bit values are whole
    multiples of a level from 0: pass ``origin=0`` for it (as :func:`asymmetry_sign` does). A constant patch
    has entropy 0; a patch whose ``n`` pixels all fall in different levels has ``log2(n)``.
    """
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    width = (high - low) / (levels - 1)
    start = low if origin is None else origin
    grey = _grey(patches.detach().double())
    lead = grey.shape[:-2]
    flat = grey.reshape(-1, grey.shape[-2] * grey.shape[-1])
    quantised = torch.round((flat - start) / width).long()
    quantised = quantised - quantised.min(dim=1, keepdim=True).values  # only the counts matter
    bins = int(quantised.max()) + 1 if quantised.numel() else 1
    counts = torch.zeros(flat.shape[0], bins, dtype=torch.float64, device=flat.device)
    counts.scatter_add_(1, quantised, torch.ones_like(flat))
    p = counts / flat.shape[1]
    terms = torch.where(p > 0, p * torch.log2(p.clamp_min(1e-300)), torch.zeros_like(p))
    return (-terms.sum(1)).float().reshape(lead)


def asymmetry_sign(image_patches: Tensor, rain_patches: Tensor,
                   value_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """η of Eq. (7)/(8) per group: +1 where the image patches' mean entropy is at least the rain
    patches', −1 where it is lower (§4.3: "η indicates whether the entropy of image patches is larger or
    smaller than that of the rain patches"; an exact tie counts as larger, the paper's usual case).

    ``image_patches`` ``G×N_B×C×P×P`` and ``rain_patches`` ``G×N_R×C×P×P`` (any leading group shape
    ``G…``, the same for both); both are quantised with the same level width, the rain layer's from 0.
    Returns float ``G…`` of ±1.
    """
    image_entropy = patch_entropies(image_patches, value_range).mean(-1)
    rain_entropy = patch_entropies(rain_patches, value_range, origin=0.0).mean(-1)
    if image_entropy.shape != rain_entropy.shape:
        raise ValueError(f"image and rain patch groups differ: {tuple(image_entropy.shape)} "
                         f"vs {tuple(rain_entropy.shape)}")
    return torch.where(image_entropy >= rain_entropy, 1.0, -1.0)


# ----------------------------------------------------------------------------------- Eq. (7)-(8)


def _squared_distances(query: Tensor, key: Tensor) -> Tensor:
    return (query[..., :, None, :] - key[..., None, :, :]).square().sum(-1)


def margin_loss(image_query: Tensor, image_key: Tensor, rain_query: Tensor, rain_key: Tensor, eta: Tensor | float, *,
                margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """Eq. (7): ``[ε + η(‖f_Ri − f_Rj‖² − ‖f_Bm − f_Bn‖²)]_+`` over every rain pair (i, j) and image pair
    (m, n).

    With η = +1 (image patches of higher entropy, :func:`asymmetry_sign`)
    it holds the rain distances a margin ε below the image distances, i.e. the rain cluster tighter; η = −1
    reverses it. ``eta`` is a number or a tensor over the leading group dimensions. ``reduction``:
    ``"mean"`` (default) or ``"sum"`` (as printed), over pairs; groups are averaged.
    """
    check_choice("reduction", reduction, ("mean", "sum"))
    rain = _squared_distances(rain_query, rain_key).flatten(-2)  # ...×N_R²
    image = _squared_distances(image_query, image_key).flatten(-2)  # ...×N_B²
    eta = torch.as_tensor(eta, dtype=rain.dtype, device=rain.device)[..., None, None]
    hinge = F.relu(margin + eta * (rain[..., :, None] - image[..., None, :]))
    per_group = hinge.mean(dim=(-2, -1)) if reduction == "mean" else hinge.sum(dim=(-2, -1))
    return per_group.mean()


def asymmetric_contrastive_loss(image_query: Tensor, image_key: Tensor, rain_query: Tensor, rain_key: Tensor,
                                eta: Tensor | float, *, temperature: float = 0.77, form: str = "printed") -> Tensor:
    """Eq. (8): ``-1/(N_R N_B) · (sum_ij exp(f_Ri·f_Rj/τ) / sum_mn exp(f_Bm·f_Bn/τ))^η``.

    With η = +1 minimising it tightens the rain cluster relative to the image cluster (Eq. (7)'s
    intent); η = −1 the reverse. Computed in the log domain (no overflow at τ = 0.07).
    ``form="printed"`` (default) is the equation as printed; note that its scale differs by
    ``(N_R/N_B)^{2η}`` between the two signs, so with N_R ≫ N_B the η = −1 case is nearly inert.
    ``form="infonce"`` is the log form, ``-η (log mean_ij exp(f_Ri·f_Rj/τ) − log mean_mn exp(f_Bm·f_Bn/τ))``,
    which treats both signs alike.
    """
    _check_form(form)
    rain = (rain_query @ rain_key.transpose(-1, -2) / temperature).flatten(-2)
    image = (image_query @ image_key.transpose(-1, -2) / temperature).flatten(-2)
    eta = torch.as_tensor(eta, dtype=rain.dtype, device=rain.device)
    n_r, n_b = rain_query.shape[-2], image_query.shape[-2]
    if form == "infonce":
        log_mean_rain = torch.logsumexp(rain, -1) - math.log(rain.shape[-1])
        log_mean_image = torch.logsumexp(image, -1) - math.log(image.shape[-1])
        log_ratio = log_mean_rain - log_mean_image
        return (-eta * log_ratio).mean()
    log_ratio = torch.logsumexp(rain, -1) - torch.logsumexp(image, -1)
    return (-torch.exp(eta * log_ratio - math.log(n_r * n_b))).mean()


# ----------------------------------------------------------------------------------- Eq. (4)


def anlcl_objective(terms: dict[str, Tensor], weights: ANLCLLossWeights = ANLCLLossWeights()) -> Tensor:
    """Eq. (4): ``L_decom + L_contrastive`` as the weighted sum of the terms present in ``terms`` (keys are
    :class:`ANLCLLossWeights` fields; a stage or ablation without a term leaves it out)."""
    table = weights.as_dict()
    unknown = set(terms) - set(table)
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; valid: {', '.join(table)}")
    if not terms:
        raise ValueError("no loss terms given")
    return sum(table[name] * value for name, value in terms.items())


# ----------------------------------------------------------------------------------- sampling + encoders + losses


@dataclass(frozen=True)
class ContrastiveSampling:
    """How the contrastive terms sample their patches (§4.4, Table 3) and which forms they use.

    - Layer contrastive (Eq. (5)) and the asymmetric terms (Eq. (7)/(8)): ``anchors_per_image`` random
      anchors per image (the public code: 1); around each, ``num_positives`` (N_B) patches of B by the
      ``positives`` strategy and ``num_negatives`` (N_R) patches of R by the ``negatives`` strategy, both
      around the same anchor location. ``neighbour`` gives at most 9 patches (the anchor and its 8
      neighbours), so its count is capped there.
    - Location contrastive (Eq. (6)): at each anchor, the derained patch against the rainy patch and
      ``num_location_negatives`` (N) rainy patches: the farthest in the search window
      (``location_negatives="reverse_nonlocal"``, §4.4) or, ``"cut"``, CUT's other sampled anchors.
    """

    positives: str = "nonlocal"
    negatives: str = "nonlocal"
    location_negatives: str = "reverse_nonlocal"
    anchors_per_image: int = 1
    num_positives: int = 8  # N_B
    num_negatives: int = 256  # N_R
    num_location_negatives: int = 256  # N
    patch_size: int = 16
    search_window: int = 40
    temperature: float = 0.77  # Eq. (5), (8): the paper's τ; the public code's is 0.07
    location_temperature: float = 0.07  # Eq. (6): CUT's and the public code's
    layer_form: str = "infonce"
    asymmetric: str = "contrastive"  # "contrastive": Eq. (8); "margin": Eq. (7)
    asymmetric_form: str = "printed"
    margin: float = 1.0

    @classmethod
    def from_sizes(cls, sizes, **overrides) -> "ContrastiveSampling":
        """The sampling a profile's ANLCL section (:class:`derainlib.profiles.ANLCLSizes`) asks for;
        ``overrides`` set the rest (strategies, forms) for an ablation."""
        values = dict(num_positives=sizes.num_positives, num_negatives=sizes.num_negatives,
                      num_location_negatives=sizes.num_location_patches, patch_size=sizes.patch_size,
                      search_window=sizes.search_window, temperature=sizes.temperature,
                      location_temperature=sizes.location_temperature)
        return cls(**(values | overrides))


def _mean_pair_distance(a: Tensor, b: Tensor, *, same: bool) -> Tensor:
    distances = torch.cdist(a.float(), b.float())  # ...×N_a×N_b
    if same:  # leave out each patch's zero distance to itself
        n = distances.shape[-1]
        return distances.sum(dim=(-2, -1)).mean() / max(n * (n - 1), 1)
    return distances.mean()


@torch.no_grad()
def feature_distances(image_features: list[Tensor], rain_features: list[Tensor]) -> dict[str, float]:
    """Fig. 7's curves for one batch: the mean Euclidean distance between embedded patches within the image
    group (``dist_image``, the non-local positives), within the rain group (``dist_rain``) and between the two
    (``dist_image_rain``), each averaged over groups and over the encoder's layers (``...×N×D`` per layer)."""
    if not image_features or len(image_features) != len(rain_features):
        raise ValueError("need the same, non-zero number of image and rain feature layers")
    count = len(image_features)
    return {
        "dist_image": float(sum(_mean_pair_distance(b, b, same=True) for b in image_features) / count),
        "dist_rain": float(sum(_mean_pair_distance(r, r, same=True) for r in rain_features) / count),
        "dist_image_rain": float(sum(_mean_pair_distance(b, r, same=False)
                                     for b, r in zip(image_features, rain_features)) / count),
    }


def _sample(images: Tensor, anchors: Tensor, strategy: str, k: int, sampling: ContrastiveSampling,
            generator: torch.Generator | None) -> Tensor:
    if strategy == "neighbour":
        k = min(k, 9)
    return sample_patches(images, anchors, strategy, k, patch_size=sampling.patch_size, window=sampling.search_window,
                          generator=generator)


def contrastive_terms(networks, rainy: Tensor, background: Tensor, rain: Tensor,
                      sampling: ContrastiveSampling = ContrastiveSampling(), *,
                      generator: torch.Generator | None = None,
                      terms: tuple[str, ...] = ("layer", "location", "asymmetric"),
                      diagnostics: dict[str, float] | None = None) -> dict[str, Tensor]:
    """The contrastive terms of Eq. (4) for one batch, unweighted: ``{"layer": Eq. (5), "location": Eq. (6),
    "asymmetric": Eq. (8) or (7)}`` (only those in ``terms``; weight them with :func:`anlcl_objective`).

    ``networks`` is a :class:`derainlib.models.anlcl.ANLCLNetworks`; ``rainy`` O and the generators'
    ``background`` B and ``rain`` R are ``N×3×H×W``. Patches are sampled on detached copies (sampling
    carries no gradient); the features of B and R are queries through the online encoder E_D and keys
    through the momentum encoder, averaged over E_D's feature layers; η comes from the entropies of the
    sampled patches (:func:`asymmetry_sign`). Anchors are drawn from
    ``generator`` (CPU), so a seeded generator repeats a step's samples. A ``diagnostics`` dict receives
    ``eta_positive_share``, the share of groups whose image patches had the higher entropy, and (Fig. 7)
    the mean Euclidean distances between the embedded patches of a group, averaged over E_D's layers:
    ``dist_image`` (B to B, the positives), ``dist_rain`` (R to R) and ``dist_image_rain`` (B to R).
    """
    unknown = set(terms) - {"layer", "location", "asymmetric"}
    if unknown:
        raise ValueError(f"unknown contrastive terms {sorted(unknown)}; valid: layer, location, asymmetric")
    check_choice("asymmetric", sampling.asymmetric, ("contrastive", "margin"))
    check_choice("location_negatives", sampling.location_negatives, ("reverse_nonlocal", "cut"))
    n, _, h, w = rainy.shape
    p = sampling.patch_size
    anchors = random_anchors(n, sampling.anchors_per_image, (h, w), p, generator=generator, device=rainy.device)
    out: dict[str, Tensor] = {}
    if "layer" in terms or "asymmetric" in terms:
        b_pos = _sample(background.detach(), anchors, sampling.positives, sampling.num_positives, sampling, generator)
        r_pos = _sample(rain.detach(), anchors, sampling.negatives, sampling.num_negatives, sampling, generator)
        b_q = networks.layer_embeddings(background, b_pos, p)
        b_k = networks.layer_embeddings(background, b_pos, p, key=True)
        r_q = networks.layer_embeddings(rain, r_pos, p, layer="rain")
        r_k = networks.layer_embeddings(rain, r_pos, p, key=True, layer="rain")
        layers = range(len(b_q))
        if diagnostics is not None:
            diagnostics |= feature_distances(b_q, r_q)
        if "layer" in terms:
            out["layer"] = sum(layer_contrastive_loss(b_q[i], b_k[i], r_q[i], r_k[i], temperature=sampling.temperature,
                                                      form=sampling.layer_form) for i in layers) / len(b_q)
        if "asymmetric" in terms:
            eta = asymmetry_sign(crop_patches(background.detach(), b_pos, p), crop_patches(rain.detach(), r_pos, p))
            if sampling.asymmetric == "margin":
                values = [margin_loss(b_q[i], b_k[i], r_q[i], r_k[i], eta, margin=sampling.margin) for i in layers]
            else:
                values = [asymmetric_contrastive_loss(b_q[i], b_k[i], r_q[i], r_k[i], eta,
                                                      temperature=sampling.temperature, form=sampling.asymmetric_form)
                          for i in layers]
            out["asymmetric"] = sum(values) / len(values)
            if diagnostics is not None:
                diagnostics["eta_positive_share"] = float((eta > 0).float().mean())
    if "location" in terms:
        if sampling.location_negatives == "reverse_nonlocal":
            far = block_match(rainy.detach(), anchors, sampling.num_location_negatives, patch_size=p,
                              window=sampling.search_window, farthest=True).positions
            keys = networks.location_embeddings(rainy, torch.cat([anchors[:, :, None], far], dim=2), p)
            queries = networks.location_embeddings(background, anchors[:, :, None], p)
            values = [location_contrastive_loss(q[:, :, 0], k[:, :, 0], k[:, :, 1:],
                                                temperature=sampling.location_temperature)
                      for q, k in zip(queries, keys)]
        else:
            if sampling.anchors_per_image < 2:
                raise ValueError("CUT's location negatives are the other anchors: anchors_per_image must be >= 2")
            keys = networks.location_embeddings(rainy, anchors[:, :, None], p)
            queries = networks.location_embeddings(background, anchors[:, :, None], p)
            values = [location_contrastive_loss(q[:, :, 0], k[:, :, 0], temperature=sampling.location_temperature)
                      for q, k in zip(queries, keys)]
        out["location"] = sum(values) / len(values)
    return out
