"""What the structured pruners need to know about attention: torchvision's ``VisionTransformer``
is pruned head by head, and ``SwinTransformer`` is refused.

A ViT's residual stream, ``hidden_dim`` wide, is one torch-pruning group: the patch embedding's
output channels, the class token, the position embedding, every layer norm, every attention's
embedding (its query, key, value and output projections) and every MLP's output. Each
``nn.MultiheadAttention`` splits that width into ``num_heads`` slices of ``head_dim``; the group
is pruned as ``num_heads`` channel groups, so the same positions leave every head and
``hidden_dim = num_heads x head_dim`` stays whole (``num_heads`` is kept). Each MLP's hidden layer
(``mlp_dim``) is a group of its own. The token grid is untouched, so a CAM layer of the pruned
copy still compares with the reference's.
"""

from __future__ import annotations

from typing import cast

import torchvision
from torch import nn


def refuse_unprunable(model: nn.Module) -> None:
    """Raise for a model whose structure the pruners would break (torchvision's ``SwinTransformer``)."""
    if isinstance(model, torchvision.models.SwinTransformer):
        raise ValueError(
            "Pruning a SwinTransformer is not supported: its shifted-window attention keeps a relative "
            "position table per head that torch-pruning does not resize. Its CAMs work: prune it with your "
            "own tool and pass the copies to pescore_nb.evaluate(reference, {name: copy}, data)."
        )


def head_groups(model: nn.Module) -> dict[nn.Module, int]:
    """``{attention: num_heads}`` for every ``nn.MultiheadAttention`` of ``model`` (torch-pruning's
    ``out_channel_groups``): its embedding is pruned by the same positions in every head."""
    return {module: module.num_heads for module in model.modules() if isinstance(module, nn.MultiheadAttention)}


def channels_per_group(model: nn.Module, layer: nn.Module, channels: int) -> int:
    """How many of ``layer``'s ``channels`` one head holds: ``head_dim`` for the layer that writes a
    ViT's residual stream, else ``channels``."""
    if isinstance(model, torchvision.models.VisionTransformer) and layer is _embedding(model):
        return channels // model.encoder.layers[0].num_heads
    return channels


def unwrapped_parameters(model: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """A ViT's class token ``(1, 1, hidden_dim)`` and position embedding ``(1, tokens, hidden_dim)``,
    with the dimension torch-pruning prunes (the last); ``[]`` for other models."""
    if isinstance(model, torchvision.models.VisionTransformer):
        return [(model.class_token, 2), (model.encoder.pos_embedding, 2)]
    return []


def sync_widths(model: nn.Module) -> None:
    """Set a pruned ViT's ``hidden_dim`` and ``mlp_dim`` (read by its forward) to its layers' widths."""
    if isinstance(model, torchvision.models.VisionTransformer):
        model.hidden_dim = model.class_token.shape[-1]
        model.mlp_dim = model.encoder.layers[0].mlp[0].out_features


def _embedding(model: torchvision.models.VisionTransformer) -> nn.Module:
    """The convolution whose output channels are the ViT's residual stream (its patch embedding)."""
    stem = model.conv_proj
    return cast(nn.Module, stem.conv_last) if isinstance(stem, nn.Sequential) else stem
