"""Controls that calibrate a verdict: models evaluated beside the candidates, with role ``control``.

- ``control:finetune``: the reference put through the candidates' fine-tuning, unpruned
  (:func:`pescore_nb.prune.sweep` makes it when it fine-tunes).
- ``control:twin``: the same architecture and recipe trained with another seed
  (``zoo.load(arch, dataset, seed=1)``, marked with :func:`as_control`).
- ``control:randomised@<layer>``: :func:`randomised`, the reference with its weights
  re-initialised from the last layer down to ``layer`` (cascading randomisation, Adebayo et al.
  2018): maps that survive it do not explain the model.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from . import schema


def as_control(model: nn.Module, provenance: dict | None = None) -> nn.Module:
    """``model`` marked as a control (role ``control``, pruner ``none``, ratio 0), in place; returns it."""
    setattr(model, schema.PRUNING_ATTRIBUTE, {schema.ROLE: schema.CONTROL, schema.PRUNER: schema.UNPRUNED,
                                              schema.RATIO: 0.0, schema.PROVENANCE: provenance or {}})
    return model


def randomised(model: nn.Module, layer: str, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose modules from the last one down to ``layer`` are re-initialised.

    Modules are taken in registration order (``model.named_modules()``, the forward order of
    sequential nets and torchvision's ResNets); every one at or after ``layer`` that has
    ``reset_parameters`` (an attention: its input projection too) draws new weights from ``seed``, and batch norms forget their running
    statistics. ``model`` itself is untouched; the copy is in eval mode and marked as the control
    ``control:randomised@<layer>`` (:data:`schema.RANDOMISED_PREFIX`).
    """
    names = [name for name, _ in model.named_modules()]
    if layer not in names or not layer:
        raise ValueError(f"Layer {layer!r} is not in {type(model).__name__}; give a qualified module name "
                         "from model.named_modules().")
    device = next(model.parameters()).device
    copied = copy.deepcopy(model).cpu()  # drawn on the CPU: the same weights on every device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _, module in list(copied.named_modules())[names.index(layer):]:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if isinstance(module, nn.MultiheadAttention):  # its input projection has no public reset
                module._reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    return as_control(copied.to(device).eval(), {"randomised_from": layer, "seed": seed})
