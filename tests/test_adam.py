"""The bound engine's Adam takes torch.optim.Adam's steps (it exists only to skip torch's
optimiser import), including on parameters that get no gradient in a step."""

from __future__ import annotations

import torch

from mlrobust.verify.adam import Adam


def test_steps_equal_torch_adam() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    ours = [torch.rand(5, 4, generator=generator, dtype=torch.float64).requires_grad_(True)]
    ours.append(torch.rand(3, generator=generator, dtype=torch.float64).requires_grad_(True))
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    start = [p.detach().clone() for p in ours]
    mine, reference = Adam(ours, lr=0.1), torch.optim.Adam(theirs, lr=0.1)
    for step in range(25):
        for parameters, optimiser in ((ours, mine), (theirs, reference)):
            optimiser.zero_grad()
            loss = ((parameters[0] - target) ** 4).sum()
            if step % 3 == 0:  # the second parameter joins only some steps
                loss = loss + (parameters[1].sin() * parameters[0][0, :3]).sum()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                parameters[0].clamp_(0, 1)  # projected, as the engine does
        for mine_p, their_p in zip(ours, theirs, strict=True):
            assert torch.allclose(mine_p, their_p, rtol=0, atol=1e-12), step
    assert all(not torch.allclose(p, q) for p, q in zip(ours, start, strict=True))  # both moved
