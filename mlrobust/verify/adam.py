"""Adam for the bound engine's tuning of α, β and the max-pool planes.

torch.optim.Adam computes the same steps, but constructing any torch optimiser imports
torch._dynamo (about a second per process on this machine), which a one-query process — a
`mlrobust verify` instance, a sweep worker's first query — pays in full. The update is the
textbook one with torch's arithmetic, so a swap changes no tuned bound.
"""

from __future__ import annotations

import math

import torch


class Adam:
    def __init__(self, parameters: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.parameters = parameters
        self.lr = lr
        self.betas = betas
        self.eps = 1e-8
        self.steps = [0] * len(parameters)  # per parameter: a step without its gradient skips it
        self.first = [torch.zeros_like(p) for p in parameters]
        self.second = [torch.zeros_like(p) for p in parameters]

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, (parameter, first, second) in enumerate(zip(self.parameters, self.first, self.second, strict=True)):
            if parameter.grad is None:
                continue
            self.steps[i] += 1
            correction1 = 1 - beta1 ** self.steps[i]
            correction2 = 1 - beta2 ** self.steps[i]
            gradient = parameter.grad
            first.lerp_(gradient, 1 - beta1)
            second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
            denominator = (second.sqrt() / math.sqrt(correction2)).add_(self.eps)
            parameter.addcdiv_(first, denominator, value=-self.lr / correction1)
