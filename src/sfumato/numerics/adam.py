"""Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015) for one tensor.

The optimisation loop and the Gatys target update a single pixel tensor. ``torch.optim.Adam`` does the same
arithmetic, but its first construction in a process imports ``torch._dynamo`` (about 3 s on a 2-core CPU),
a fixed cost every ``sfumato`` command paid before its first step. This is the paper's update, with the
bias corrections, written out for one tensor; it has no such import.
"""

from __future__ import annotations

import torch

__all__ = ["Adam"]


class Adam:
    """Adam on one tensor ``param`` (updated in place by :meth:`step` from ``param.grad``).

    ``lr`` may be changed between steps (a schedule sets :attr:`lr`). ``betas`` and ``eps`` as in the paper.
    """

    def __init__(self, param: torch.Tensor, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.param = param
        self.lr = float(lr)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.t = 0
        self.m = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.v = torch.zeros_like(param, memory_format=torch.preserve_format)

    def zero_grad(self) -> None:
        self.param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update from ``param.grad`` (nothing happens when there is no gradient)."""
        g = self.param.grad
        if g is None:
            return
        self.t += 1
        self.m.lerp_(g, 1 - self.beta1)  # first moment: m ← β1·m + (1−β1)·g
        self.v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)  # second moment
        step_size = self.lr / (1 - self.beta1**self.t)
        denom = (self.v.sqrt() / (1 - self.beta2**self.t) ** 0.5).add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-step_size)
