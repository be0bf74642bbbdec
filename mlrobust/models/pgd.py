"""L-infinity PGD for adversarial training and for the model cards' robust accuracy.

This attacks the whole image inside an L-infinity ball (Madry et al.), which is how the
models are trained and compared. The verifier chain's `attack` works on layered boxes and
lives with the verifiers; both step the same way (signed gradient, projection onto a box).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, targets) -> per-example loss


def top2_set_violation(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example: the best wrong logit minus the worst true logit.

    The exact top-2 set is kept iff this is < 0; ties count as violations. `labels` is an
    int64 (N, 2) tensor of the two true classes; with (N, k) labels it is the top-k violation
    (Triple-MNIST: k = 3).
    """
    true_scores = logits.gather(1, labels)
    wrong = logits.scatter(1, labels, float("-inf"))
    return wrong.max(dim=1).values - true_scores.min(dim=1).values


def bce_loss(logits: torch.Tensor, multi_hot: torch.Tensor) -> torch.Tensor:
    """Per-example multi-label BCE, the training loss."""
    return nn.functional.binary_cross_entropy_with_logits(logits, multi_hot, reduction="none").mean(dim=1)


def sigmoid_kl(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-example KL(p_ref || p) of independent sigmoid outputs, averaged over the classes.

    The multi-label analogue of TRADES' softmax KL: each class is its own Bernoulli. Averaged
    (not summed) over classes, like `bce_loss`, so a TRADES beta weighs the two alike.
    """
    p_ref = torch.sigmoid(reference_logits)
    log_ref, log_ref_off = nn.functional.logsigmoid(reference_logits), nn.functional.logsigmoid(-reference_logits)
    log_p, log_p_off = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
    return (p_ref * (log_ref - log_p) + (1 - p_ref) * (log_ref_off - log_p_off)).mean(dim=1)


def pgd_linf(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    loss: Loss,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Maximise `loss` over the L-infinity ball of radius eps (clipped to the value range).

    Starts at a uniformly random point of the ball; returns the last iterate, which always
    lies in the ball and the range.
    """
    lo = (images - eps).clamp(*value_range)
    hi = (images + eps).clamp(*value_range)
    noise = torch.rand(images.shape, generator=generator, dtype=images.dtype)
    x = lo + noise * (hi - lo)
    for _ in range(steps):
        x.requires_grad_(True)
        objective = loss(model(x), targets).sum()
        (grad,) = torch.autograd.grad(objective, x)
        x = torch.minimum(torch.maximum(x.detach() + step_size * grad.sign(), lo), hi)
    return x.detach()
