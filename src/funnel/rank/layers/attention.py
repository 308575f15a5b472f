"""Target attention over a behaviour sequence (DIN's local activation unit)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from funnel.rank.layers.blocks import MLP


class TargetAttention(nn.Module):
    """Weighted sum of history entries, each weighted by an MLP of ``[h, c, h - c, h * c]``
    (Zhou et al., KDD 2018, section 4.3, the activation unit with the out-product replaced by
    the element-wise one, as in their released code).

    The weights are not normalized (no softmax), as in the paper: the pooled vector's size
    keeps how much of the history speaks for the candidate. Padding entries weigh 0. The first
    layer is applied as ``h (A + C) + c (B - C) + (h * c) D`` (its weight's four d-column
    blocks), the same map without building the (B, N, 4d) input: half the multiplies, and
    when every row has the same history (one request), the ``h`` part is computed once.
    """

    def __init__(self, dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.mlp = MLP(4 * dim, hidden, out_dim=1)  # Linear, ReLU, ..., Linear(., 1)

    @property
    def _first(self) -> nn.Linear:
        """The first layer (its weight's four d-column blocks are applied separately)."""
        first = self.mlp.net[0]
        assert isinstance(first, nn.Linear)
        return first

    def _rest(self, x: torch.Tensor) -> torch.Tensor:
        """The layers after the first one's ReLU."""
        for layer in list(self.mlp.net)[2:]:
            x = layer(x)
        return x

    def forward(
        self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """h (B | 1, N, d) history (1: the same for every row), c (B, d) candidate, mask
        (B | 1, N) 1 = entry -> pooled (B, d)."""
        first = self._first
        a, b, cc, d = first.weight.split(h.shape[-1], dim=1)  # (H, d) each
        if h.shape[0] == 1 and c.shape[0] > 1:
            return self._one_history(h[0], c, mask, (a, b, cc, d))
        pre = h @ (a + cc).T  # (B, N, H)
        pre = pre + (c @ (b - cc).T + first.bias).unsqueeze(1)  # + (B, 1, H)
        pre = pre + (h * c.unsqueeze(1)) @ d.T  # (B, N, d) @ (d, H)
        w = self._rest(torch.relu(pre)).squeeze(-1) * mask  # (B, N)
        return torch.bmm(w.unsqueeze(1), h).squeeze(1)  # (B, 1, N) @ (B, N, d) -> (B, d)

    def _one_history(
        self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor,
        blocks: tuple[torch.Tensor, ...],
    ) -> torch.Tensor:
        """The same map for one history h (N, d) shared by every row: the first layer as one
        (B, d) @ (d, N H) product, c's coefficients over every (entry, unit) at once."""
        a, b, cc, d = blocks
        n, units = h.shape[0], a.shape[0]
        g = h.T.unsqueeze(-1) * d.T.unsqueeze(1) + (b - cc).T.unsqueeze(1)  # (d, N, H)
        base = h @ (a + cc).T + self._first.bias  # (N, H): the h part, once
        pre = torch.addmm(base.reshape(1, -1), c, g.reshape(g.shape[0], -1))  # (B, N H)
        w = self._rest(torch.relu(pre).view(-1, n, units)).squeeze(-1) * mask  # (B, N)
        return w @ h  # (B, N) @ (N, d) -> (B, d)
