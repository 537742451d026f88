"""How the ``"l1"``, ``"l2"`` and ``"random"`` pruners rank a layer's output channels (the lowest go).

``"taylor"`` uses torch-pruning's ``GroupTaylorImportance`` and ``"senpis"``
:class:`pescore_nb.senpis.SenpisImportance`; both need labelled images.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner import function as tp_function

PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)  # the layers whose output channels (or weights) are pruned
_OUT_CHANNEL_FNS = (tp_function.prune_conv_out_channels, tp_function.prune_linear_out_channels)


class FilterNormImportance(tp.importance.Importance):
    """Channel importance = p-norm of the channel's filter, averaged over tied layers.

    For a torch-pruning group (the channels that must be removed together) returns a tensor
    ``(n_channels,)``: for every Conv/Linear whose *output* channels are in the group, the
    p-norm of each filter ``weight[c]`` (all its input weights), then the mean over those layers.
    """

    def __init__(self, p: int):
        self.p = p

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor | None:
        total, n_layers = torch.zeros(len(group[0].idxs)), 0
        for i, (dep, idxs) in enumerate(group):
            if dep.pruning_fn not in _OUT_CHANNEL_FNS or not isinstance(dep.layer, PRUNABLE):
                continue
            weight = dep.layer.weight.detach()
            if getattr(dep.layer, "transposed", False):
                weight = weight.transpose(0, 1)
            norms = weight[idxs].flatten(1).float().norm(p=self.p, dim=1).cpu()
            total.scatter_add_(0, torch.tensor(group[i].root_idxs), norms)
            n_layers += 1
        return total / n_layers if n_layers else None


class SeededRandomImportance(tp.importance.Importance):
    """Channel importance drawn uniformly from a ``torch.Generator`` seeded with ``seed``.

    Unlike ``tp.importance.RandomImportance`` it never touches the global RNG, so the same seed
    gives the same channels whatever ran before. Returns ``(n_channels,)`` per group.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, group) -> torch.Tensor:
        _, idxs = group[0]
        return torch.rand(len(idxs), generator=self.generator)


def weight_importance(pruner: str, seed: int) -> tp.importance.Importance:
    """The channel importance of ``"l1"``, ``"l2"`` or ``"random"`` (drawn with ``seed``)."""
    if pruner == "random":
        return SeededRandomImportance(seed)
    return FilterNormImportance(p={"l1": 1, "l2": 2}[pruner])
