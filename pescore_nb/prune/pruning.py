"""Pruning one copy of a model in place: the pruners, the layers they act on, and how each one
removes channels (structured) or zeroes weights (``"unstructured"``); see :mod:`pescore_nb.prune`."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from pescore_nb.schema import UNPRUNED
from pescore_nb.senpis import SenpisImportance, group_filters

from .attention import channels_per_group, head_groups, sync_widths, unwrapped_parameters
from .importance import PRUNABLE, weight_importance

PRUNERS = ("l1", "l2", "random", "taylor", "senpis", "unstructured")
DATA_PRUNERS = ("taylor", "senpis")  # rank channels on a class-balanced sample of `data`
MASKED = ("weight", "in_proj_weight")  # the tensors "unstructured" masks (the latter in attentions)


@torch.no_grad()
def trace(model: nn.Module, example_input) -> tuple[torch.Tensor, list[tuple[str, torch.Size]]]:
    """Run ``example_input`` through an eval-mode copy of ``model``.

    Returns the logits ``(N, num_classes)`` and, in execution order, the qualified name and
    output shape of every Conv/Linear layer that ran.
    """
    if not isinstance(example_input, torch.Tensor) or example_input.ndim != 4:
        shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input).__name__
        raise ValueError(
            f"example_input must be an image batch tensor (N, C, H, W), got {shape}; "
            "pass e.g. torch.randn(1, 3, 64, 64) on the model's device."
        )
    copied = copy.deepcopy(model).eval()
    executed = []
    for name, module in copied.named_modules():
        if isinstance(module, PRUNABLE):
            module.register_forward_hook(lambda m, i, out, name=name: executed.append((name, out.shape)))
    try:
        logits = copied(example_input)
    except RuntimeError as error:
        raise ValueError(
            f"The model could not run on example_input of shape {tuple(example_input.shape)} "
            f"({str(error).splitlines()[0]}); pass a batch shaped like the model's training images, "
            "on the model's device."
        ) from error
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"The model must return logits (N, num_classes), got {shape}; "
            "wrap it so that forward returns the class scores tensor."
        )
    return logits, executed


def output_layer(executed: list[tuple[str, torch.Size]], num_classes: int) -> str:
    """Qualified name of the last Conv/Linear layer that ran with ``num_classes`` output channels."""
    matches = [name for name, shape in executed if len(shape) >= 2 and shape[1] == num_classes]
    if not matches:
        raise ValueError(
            f"Could not find the classifier's output layer: no Conv/Linear layer produces {num_classes} "
            "channels; pass ignored_layers=[name of the layer that produces the logits], e.g. ['fc']."
        )
    return matches[-1]


def layer_names(model: nn.Module, layers: Sequence[str | nn.Module]) -> list[str]:
    """Qualified names of ``layers`` (names or modules of ``model``)."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    modules = dict(model.named_modules())
    module_names = {id(module): name for name, module in modules.items()}
    names = []
    for layer in layers:
        name = module_names.get(id(layer)) if isinstance(layer, nn.Module) else layer
        if not isinstance(name, str) or name not in modules:
            examples = [n for n, m in model.named_modules() if isinstance(m, PRUNABLE)][-3:]
            raise ValueError(
                f"ignored_layers entry {layer!r} is not a module of the model; "
                f"pass qualified names such as {examples} or the model's own modules."
            )
        names.append(name)
    return names


def refuse_for_senpis(model: nn.Module) -> None:
    """``"senpis"`` removes single channels, which a grouped (not depthwise) convolution cannot lose, and
    ablates an attention's output channels on its batch-first output."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd) and module.groups not in (1, module.out_channels):
            raise ValueError(
                f"pruner 'senpis' cannot prune the grouped convolution {name!r} (groups={module.groups}); "
                "use pruner='l2' or 'taylor' for this model."
            )
        if isinstance(module, nn.MultiheadAttention) and not module.batch_first:
            raise ValueError(
                f"pruner 'senpis' needs batch-first attentions, and {name!r} has batch_first=False; "
                "use pruner='l2' or 'taylor' for this model."
            )


def prune_model(model: nn.Module, pruner: str, ratio: float, example_input: torch.Tensor, ignored: list[nn.Module],
                order: list[str], seed: int, sample: tuple[torch.Tensor, torch.Tensor] | None) -> int:
    """Prune ``model`` in place with ``pruner`` at ``ratio``; return how many weights masks zero.

    ``order``: qualified names of the Conv/Linear layers in forward order; ``seed``: the ``"random"``
    channel choice; ``sample``: the class-balanced ``(images (N, C, H, W), labels (N,))`` on the
    model's device, or ``None``. ``"unstructured"`` leaves its masks on the model (``weight_mask``).
    """
    if ratio == 0 or pruner == UNPRUNED:
        return 0
    if pruner == "unstructured":
        return _mask_weights(model, ratio, ignored)
    with _all_trainable(model):
        if pruner == "senpis":
            importance = SenpisImportance(model, *_sample_for(pruner, sample))
            _remove_channels_in_order(model, example_input, ratio, importance, ignored, order)
        elif pruner == "taylor":
            images, labels = _sample_for(pruner, sample)
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            _remove_channels(model, example_input, ratio, tp.importance.GroupTaylorImportance(), ignored)
            model.zero_grad(set_to_none=True)
        else:
            _remove_channels(model, example_input, ratio, weight_importance(pruner, seed), ignored)
    sync_widths(model)
    return 0


def remove_masks(model: nn.Module) -> None:
    """Make the ``"unstructured"`` masks permanent: the masked weights stay zero, the masks go."""
    for module in model.modules():
        for name in MASKED:
            if hasattr(module, f"{name}_mask"):
                torch_prune.remove(module, name)
        for key, hook in list(module._forward_pre_hooks.items()):
            if hook is _mask_output_projection:
                del module._forward_pre_hooks[key]


@contextmanager
def _all_trainable(model: nn.Module) -> Iterator[None]:
    """Let every parameter require grad, then restore the flags by name (pruning replaces the tensors).

    torch-pruning traces through autograd: frozen parameters would silently prune nothing.
    """
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    model.requires_grad_(True)
    try:
        yield
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(requires_grad[name])


def _channels_kept(channels: int, ratio: float) -> int:
    """How many of a layer's ``channels`` the structured pruners keep at ``ratio``: never none."""
    return max(1, int(channels * (1 - ratio)))


def _remove_channels(model, example_input, ratio: float, importance, ignored: list[nn.Module]) -> None:
    """Remove ``ratio`` of the output channels of every prunable layer of ``model`` in place, ranking
    every group's channels with ``importance`` on the unpruned network first."""
    # torch-pruning keeps int(C * (1 - ratio)) channels (per head for attention) and skips a layer
    # entirely when that is 0; give such layers a ratio that keeps exactly one channel (per head)
    # instead, so more pruning never means less.
    at_risk = {}
    for module in model.modules():
        if isinstance(module, PRUNABLE) and module not in ignored:
            channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            channels = channels_per_group(model, module, channels)
            if int(channels * (1 - ratio)) < _channels_kept(channels, ratio):
                at_risk[module] = max(0.0, 1 - 1.5 / channels)
    pruner = tp.pruner.BasePruner(
        model,
        example_input,
        importance=importance,
        pruning_ratio=ratio,
        pruning_ratio_dict=at_risk,
        ignored_layers=ignored,
        out_channel_groups=head_groups(model),
        unwrapped_parameters=unwrapped_parameters(model),
    )
    pruner.step()


def _sample_for(pruner: str, sample: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The class-balanced sample a data-driven pruner ranks channels on."""
    if sample is None:
        raise ValueError(f"pruner {pruner!r} ranks channels on training images; pass data= to sweep.")
    return sample


def _remove_channels_in_order(model, example_input, ratio: float, importance, ignored: list[nn.Module],
                              order: list[str]) -> None:
    """Remove ``ratio`` of the output channels of every prunable layer of ``model`` in place, one
    torch-pruning group after another in the forward ``order`` of their first layer.

    ``importance`` ranks a group's channels ``(n_channels,)`` on the network already pruned before
    it; the lowest go, ties broken by channel index (the lower index goes first). A group through
    attention is ranked by position within a head (the mean over heads), and the same positions
    leave every head.
    """
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input,
                                                  unwrapped_parameters=unwrapped_parameters(model))
    heads_of = head_groups(model)
    ignored_modules = {module for layer in ignored for module in layer.modules()}
    done = set()
    for name in order:
        layer = model.get_submodule(name)
        if layer in done:
            continue
        prune_out_channels = graph.get_pruner_of_module(layer).prune_out_channels
        channels = graph.get_out_channels(layer)
        group = graph.get_pruning_group(layer, prune_out_channels, list(range(channels)))
        tied = {tied_layer for tied_layer, _, _ in group_filters(group)}
        done |= tied
        heads = max([heads_of.get(item.dep.target.module, 1) for item in group])
        per_head = channels // heads
        n_removed = per_head - _channels_kept(per_head, ratio)
        if n_removed == 0 or tied & ignored_modules:
            continue
        by_position = importance(group).reshape(heads, per_head).mean(0)
        positions = torch.sort(by_position, stable=True).indices[:n_removed]
        removed = (positions[None] + per_head * torch.arange(heads)[:, None]).flatten()
        graph.get_pruning_group(layer, prune_out_channels, sorted(removed.tolist())).prune()
        sync_widths(model)


def _mask_weights(model: nn.Module, ratio: float, ignored: list[nn.Module]) -> int:
    """Mask the ``ratio`` smallest-magnitude weights of all prunable layers and attentions' input
    projections; return how many."""
    attentions = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None]
    weights: list[tuple[nn.Module, str]] = [(m, "weight") for m in model.modules()
                                             if isinstance(m, PRUNABLE) and m not in ignored]
    weights += [(m, "in_proj_weight") for m in attentions if m not in ignored]
    torch_prune.global_unstructured(weights, pruning_method=torch_prune.L1Unstructured, amount=ratio)
    for attention in attentions:
        attention.register_forward_pre_hook(_mask_output_projection)
    return sum(int((module.get_buffer(f"{name}_mask") == 0).sum()) for module, name in weights)


def _mask_output_projection(attention: nn.MultiheadAttention, inputs) -> None:
    """Apply ``attention.out_proj``'s mask before ``attention`` runs: the attention reads
    ``out_proj.weight`` without calling ``out_proj``, so the mask's own hook would never refresh it."""
    for hook in attention.out_proj._forward_pre_hooks.values():
        hook(attention.out_proj, inputs)
