"""Instruments for a training run: how hard each loss term pulls, and the collapse rule.

**Gradient-ratio monitor** (:func:`output_gradient_norms`, :func:`gradient_ratios`). Adam follows the
sum of the terms' gradients; a term whose gradient is orders of magnitude larger than the detail
loss's decides where the network goes. The monitor measures each weighted term's gradient on the
network *output* it reads (``L_d`` and ``L_Dual(sup)``: the derained labeled batch; ``L_r``: the rain
layer; ``L_Dual(unsup)``: the derained real batch), which costs one backward through the loss heads,
not through the network, and reports each norm against ``L_d``'s. (``L_d`` and ``L_r`` are mean L1 losses:
their gradient on the output has norm ``1/sqrt(N)`` for ``N`` values whatever the output, so the ratios
measure each other term's pull in that fixed unit.) :func:`derainlib.train.train`
logs them (``TrainConfig.monitor_gradients``) as ``grad_ratio_<term>`` columns of the per-epoch CSV.

**Collapse rule** (:class:`CollapseRule`, :class:`CollapseWatch`): the stability diagnostic's rule
(``derainlib.experiments.semi_drdnet_stability``), applied while a run trains. After at least
``window`` (50) steps, a run *collapses* at the first step where, over its last ``window`` steps,

- the mean detail loss ``L_d`` (Eq. (12)) exceeds ``max_detail_ratio`` (1.5) times the supervised
  recipe's epoch-mean ``L_d`` at the same step of its schedule (its ``log.csv``), or
- more than ``max_out_of_range`` (5 %) of the raw output values of the unlabeled real batch lie
  outside [0, 1] (semi-supervised runs only: as in the diagnostic, this watches the outputs that no
  L1 term ties to a target; a labeled output that leaves [0, 1] raises ``L_d`` itself).

The out-of-range threshold was first the diagnostic's 1 %, which that diagnostic measures in eval mode on whole
test images. On training batches in train mode it stopped a healthy run: a stable-reading fine-tune (Table VII's
``aug_neg``, seed 0) had 1.06 % of its real outputs out of range over its first 50 steps, just after the learning
rate restarts, with ``L_d`` at 0.75 of the supervised reference; the λ = 0 control itself averaged 1.1 % over its
first epoch. The diagnostic's healthy models sit at 0.2 % (real proxy) and 1.7 % (Rain200H test), its collapsed
readings at 13-100 %: 5 % lies between them.

The diagnostic judged after its window (300 steps at the cpu profile), when the supervised recipe's
outputs were back inside [0, 1] (0.2 % outside); a freshly initialised network's are not (a quarter
outside is common), so a run from scratch is judged from step :data:`COLD_START_STEPS` on, a warm-started
run from its first full window. The diagnostic measured the out-of-range share on the real-proxy test
split in eval mode; here it is the training batches in train mode, step by step. A collapsed run stops at that step,
keeps its weights, and its ``model.pt`` and record say so. A resumed run's watch starts empty (it
judges again after ``window`` steps).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

#: The stability diagnostic's window and L_d ratio (``semi_drdnet_stability``: LAST_STEPS, MAX_DETAIL_RATIO); the
#: out-of-range share is the module docstring's, not the diagnostic's eval-mode 1 %.
COLLAPSE_WINDOW = 50
COLLAPSE_DETAIL_RATIO = 1.5
COLLAPSE_OUT_OF_RANGE = 0.05
#: The first step at which a run from scratch is judged: the cpu profile's stability window.
COLD_START_STEPS = 300

#: The term every ratio is taken against.
REFERENCE_TERM = "detail"


def output_gradient_norms(terms: Mapping[str, Tensor], outputs: Mapping[str, Tensor],
                          weights: Mapping[str, float]) -> dict[str, float]:
    """The L2 norm of ``d(weights[t] * terms[t]) / d(outputs[t])`` for every term with an output and a weight.

    The graph is kept (``retain_graph``), so the caller's backward still runs; no gradient is
    accumulated anywhere. A term that does not depend on its output gets 0.
    """
    norms = {}
    for name, term in terms.items():
        if name not in outputs or name not in weights:
            continue
        output = outputs[name]
        if not term.requires_grad or not output.requires_grad:
            norms[name] = 0.0
            continue
        (grad,) = torch.autograd.grad(weights[name] * term, output, retain_graph=True, allow_unused=True)
        norms[name] = 0.0 if grad is None else float(grad.float().norm())
    return norms


def gradient_ratios(norms: Mapping[str, float], reference: str = REFERENCE_TERM) -> dict[str, float]:
    """``grad_norm_<reference>`` and ``grad_ratio_<t>`` = each other term's norm / the reference's (NaN if it is 0)."""
    if reference not in norms:
        raise ValueError(f"no {reference!r} term among the gradient norms {sorted(norms)}")
    base = norms[reference]
    out = {f"grad_norm_{reference}": base}
    for name, value in norms.items():
        if name != reference:
            out[f"grad_ratio_{name}"] = value / base if base > 0 else math.nan
    return out


def out_of_range_fraction(images: Tensor) -> float:
    """The fraction of values outside [0, 1] (a raw network output, before any clamp)."""
    return float(((images < 0) | (images > 1)).float().mean())


@dataclass(frozen=True)
class CollapseRule:
    """The collapse rule of the module docstring. ``reference``: ``(step, L_d)`` pairs of the supervised
    recipe's epoch means, ascending in step (its ``log.csv`` columns ``step`` and ``detail``)."""

    reference: tuple[tuple[int, float], ...]
    window: int = COLLAPSE_WINDOW
    max_detail_ratio: float = COLLAPSE_DETAIL_RATIO
    max_out_of_range: float = COLLAPSE_OUT_OF_RANGE
    start: int | None = None  # the first step judged; None: the first full window

    def __post_init__(self) -> None:
        if not self.reference:
            raise ValueError("the collapse rule needs the supervised recipe's L_d curve (at least one (step, L_d))")
        steps = [int(s) for s, _ in self.reference]
        if steps != sorted(steps):
            raise ValueError("the collapse rule's reference curve must be ascending in step")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")

    def reference_at(self, step: int) -> float:
        """The reference ``L_d`` at ``step``: the last logged epoch at or before it (the first before any)."""
        value = float(self.reference[0][1])
        for s, detail in self.reference:
            if s > step:
                break
            value = float(detail)
        return value


class CollapseWatch:
    """Feed it every step's ``L_d`` and out-of-range fraction; :meth:`update` returns the verdict once
    the rule fires (and keeps returning it), ``None`` before."""

    def __init__(self, rule: CollapseRule) -> None:
        self.rule = rule
        self._detail: deque[float] = deque(maxlen=rule.window)
        self._out_of_range: deque[float] = deque(maxlen=rule.window)
        self.verdict: dict | None = None

    def update(self, step: int, detail: float, out_of_range: float | None) -> dict | None:
        """``out_of_range``: the real batch's share outside [0, 1], ``None`` where there is no real batch."""
        if self.verdict is not None:
            return self.verdict
        self._detail.append(detail)
        if out_of_range is not None:
            self._out_of_range.append(out_of_range)
        if len(self._detail) < self.rule.window or step < (self.rule.start or 0):
            return None
        mean_detail = sum(self._detail) / len(self._detail)
        mean_out = sum(self._out_of_range) / len(self._out_of_range) if self._out_of_range else 0.0
        reference = self.rule.reference_at(step)
        reasons = []
        if not mean_detail <= self.rule.max_detail_ratio * reference:  # NaN counts as collapsed
            reasons.append(f"L_d {mean_detail:.4g} > {self.rule.max_detail_ratio:g} x supervised {reference:.4g}")
        if not mean_out <= self.rule.max_out_of_range:
            reasons.append(f"{100 * mean_out:.1f}% of outputs outside [0, 1]")
        if reasons:
            self.verdict = {"step": int(step), "detail_last": mean_detail, "reference_detail": reference,
                            "detail_vs_reference": mean_detail / reference if reference > 0 else math.inf,
                            "out_of_range_last": mean_out, "reason": "; ".join(reasons)}
        return self.verdict


def reference_curve(log: Sequence[Mapping[str, float]]) -> tuple[tuple[int, float], ...]:
    """``(step, detail)`` pairs from a run's ``log.csv`` rows (as dicts), for :class:`CollapseRule`."""
    pairs = [(int(row["step"]), float(row["detail"])) for row in log]
    if not pairs:
        raise ValueError("the supervised run's log has no rows: it cannot serve as the collapse reference")
    return tuple(sorted(pairs))


__all__ = ["COLD_START_STEPS", "COLLAPSE_DETAIL_RATIO", "COLLAPSE_OUT_OF_RANGE", "COLLAPSE_WINDOW", "CollapseRule", "CollapseWatch",
           "REFERENCE_TERM", "gradient_ratios", "out_of_range_fraction", "output_gradient_norms", "reference_curve"]
