"""Layer layouts: turning a layer's output into the ``(N, C, h, w)`` tensor CAMs are made from.

Convolutional layers already give ``(N, C, h, w)``. Two other layouts are common:

- *tokens* ``(N, P + h*w, D)``: a vision transformer's block, with ``P`` prefix tokens (the class
  token; DeiT adds a distillation token, some models register tokens) before the ``h x w`` patch
  grid. :class:`TokenGrid` drops the prefix and folds the patches back into ``(N, D, h, w)``.
- *channels-last* ``(N, H, W, C)``: Swin's blocks and the layer norms inside ConvNeXt's blocks.
  :class:`ChannelsLast` permutes them to ``(N, C, H, W)``.

A transform follows pytorch-grad-cam's ``reshape_transform`` contract (layer output ->
``(N, C, h, w)``), so the same callable serves both. For torchvision's ``VisionTransformer`` and
``SwinTransformer`` the transform is chosen automatically; for any other model a layer whose
output is tokens, or that is channels-last by its kind (a ``LayerNorm`` over the last axis, or a
module inside a Swin or ConvNeXt block), is refused without a ``reshape_transform``: a layout is
never guessed.
"""
from __future__ import annotations

import importlib
import math
from typing import Callable, Mapping

import torch
from torch import nn

Transform = Callable[[torch.Tensor], torch.Tensor]
CHANNELS_LAST_BLOCKS = ("SwinTransformerBlock", "SwinTransformerBlockV2", "CNBlock")  # torchvision's class names
CHANNELS_FIRST_NORMS = ("LayerNorm2d",)  # torchvision's layer norm over the channels of (N, C, H, W)


class TokenGrid:
    """Tokens ``(N, prefix_tokens + h*w, D)`` -> ``(N, D, h, w)``: the prefix dropped, the square patch grid
    restored (pytorch-grad-cam's ``vit_reshape_transform``)."""

    def __init__(self, prefix_tokens: int = 1):
        if isinstance(prefix_tokens, bool) or not isinstance(prefix_tokens, int) or prefix_tokens < 0:
            raise ValueError(f"prefix_tokens must be an integer >= 0 (1 for ViT's class token, 2 for DeiT), "
                             f"got {prefix_tokens!r}.")
        self.prefix_tokens = prefix_tokens

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3:
            raise ValueError(f"The 'vit' layout takes tokens (N, tokens, D), got {tuple(tokens.shape)}.")
        patches = tokens.shape[1] - self.prefix_tokens
        side = math.isqrt(max(patches, 0))
        if patches < 1 or side * side != patches:
            raise ValueError(f"{tokens.shape[1]} tokens less {self.prefix_tokens} prefix token(s) leave {patches}, "
                             "not a square patch grid; set prefix_tokens to the model's class/distillation/"
                             "register tokens, e.g. layouts.TokenGrid(prefix_tokens=2) for DeiT.")
        grid = tokens[:, self.prefix_tokens:, :].reshape(tokens.shape[0], side, side, tokens.shape[2])
        return grid.permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokenGrid(prefix_tokens={self.prefix_tokens})"


class ChannelsLast:
    """``(N, H, W, C)`` -> ``(N, C, H, W)`` (pytorch-grad-cam's Swin transform without the resize)."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.ndim != 4:
            raise ValueError(f"The 'swin' layout takes channels-last (N, H, W, C), got {tuple(output.shape)}.")
        return output.permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return "ChannelsLast()"


NAMED = {"vit": TokenGrid, "swin": ChannelsLast}


def named(name: str) -> Transform:
    """The transform called ``name``: ``"vit"``, ``"swin"``, or an import path ``"package.module:function"``."""
    if name in NAMED:
        return NAMED[name]()
    if ":" in name:
        module, _, attribute = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"reshape_transform {name!r} cannot be imported ({error}); give an importable "
                             "'package.module:function'.") from None
    raise ValueError(f"Unknown reshape_transform {name!r}; use 'vit', 'swin', an import path "
                     "'package.module:function', or a callable (layer output -> (N, C, h, w)).")


def resolve(model: nn.Module, layers: Mapping[str, nn.Module], given=None) -> dict[str, Transform | None]:
    """The transform of each layer (``{name: module}``): ``given`` (a callable, a name, or a dict of those by
    layer), else the automatic one of torchvision's ViT and Swin, else ``None`` (the output is used as is)."""
    if isinstance(given, Mapping):
        unknown = sorted(set(given) - set(layers))
        if unknown:
            raise ValueError(f"reshape_transform names layers {unknown} that are not requested ({list(layers)}).")
        return {name: _one(given[name]) if name in given else _automatic(model, name, module)
                for name, module in layers.items()}
    if given is not None:
        return {name: _one(given) for name in layers}
    return {name: _automatic(model, name, module) for name, module in layers.items()}


def _one(transform) -> Transform | None:
    if transform is None or callable(transform):
        return transform
    if isinstance(transform, str):
        return named(transform)
    raise ValueError(f"reshape_transform must be a callable, 'vit', 'swin' or an import path, got {transform!r}.")


def _automatic(model: nn.Module, name: str, module: nn.Module) -> Transform | None:
    from torchvision.models import SwinTransformer, VisionTransformer

    if isinstance(model, VisionTransformer) and not isinstance(module, nn.Conv2d):
        return TokenGrid(1)
    if isinstance(model, SwinTransformer) and (name in ("features", "norm") or name.startswith("features.")) \
            and not isinstance(module, nn.Conv2d):
        return ChannelsLast()
    return None


def channels_last_suspect(model: nn.Module, name: str, module: nn.Module) -> bool:
    """True for a layer whose 4-D output is channels-last by its kind: a ``LayerNorm`` over the last axis, or
    a module (other than a convolution) inside a Swin or ConvNeXt block."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return False
    if isinstance(module, nn.LayerNorm) and type(module).__name__ not in CHANNELS_FIRST_NORMS:
        return True
    parts = name.split(".")
    ancestors = (model.get_submodule(".".join(parts[:i])) for i in range(1, len(parts)))
    return any(type(ancestor).__name__ in CHANNELS_LAST_BLOCKS for ancestor in ancestors)
