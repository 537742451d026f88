"""Pruning sweeps: the candidate models that PE-score compares with their unpruned reference.

:func:`sweep` copies a model once per ratio and prunes each copy with one method::

    candidates = sweep(model, torch.randn(1, 3, 64, 64), [0.1, 0.3, 0.5], method="l2")
    candidates["l2@0.30"]          # an nn.Module, in eval mode
    candidates["l2@0.30"].pescore_pruning
    # {"pruner": "l2", "ratio": 0.3, "params": 2801450, "macs": 39753226}

Methods and what ``ratio`` means for each:

- ``"l1"``, ``"l2"`` (filter-norm pruning, the PE-score paper's "Weight" method) and ``"random"``
  are *structured*: torch-pruning removes whole output channels, so the pruned model really is
  smaller and faster, and every module keeps its qualified name (``layer1.0.conv1`` stays
  ``layer1.0.conv1``, only narrower). ``ratio`` is the fraction of output channels removed
  from every prunable Conv/Linear layer (local, layer-wise pruning): a layer with ``C`` output
  channels keeps ``int(C * (1 - ratio))`` of them, and at least one — a layer is never emptied.
  Channels tied together (residual additions, depthwise convolutions) are removed together.
  The importance of a channel is the p-norm of its filter (``p = 1`` or ``2``); for tied
  channels, the mean of the tied filters' norms. ``"random"`` ranks channels by uniform random
  numbers drawn from a generator seeded with ``seed``.
- ``"unstructured"`` zeroes single weights: global magnitude pruning
  (:func:`torch.nn.utils.prune.global_unstructured` with ``L1Unstructured``) over the weight
  tensors of every prunable Conv/Linear layer together, made permanent with
  :func:`torch.nn.utils.prune.remove`. ``ratio`` is the fraction of those weights set to zero
  (``round(ratio * n_weights)`` of them); biases and normalisation layers are untouched.

The classifier's output layer is never pruned, so the logits keep their ``num_classes``
columns: it is found automatically as the last Conv/Linear layer that produces the logits,
and ``ignored_layers=`` replaces that choice (those layers keep their output channels, and
their weights are not masked).

Every returned model carries ``model.pescore_pruning`` (:data:`pescore_nb.schema.PRUNING_ATTRIBUTE`),
``{"pruner": method, "ratio": ratio, "params": int, "macs": int}``, which ``evaluate`` turns into the
Dataset's ``model`` coordinates. ``params`` and ``macs`` come from torch-pruning's counter
(``tp.utils.count_ops_and_params``), MACs for one image of ``example_input``'s size. For
``"unstructured"`` the model stays dense: ``macs`` is unchanged and ``params`` is the dense count
minus the weights the masks removed.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch_pruning.pruner import function as tp_function

from pescore_nb.schema import PARAMS, PRUNER, PRUNING_ATTRIBUTE, RATIO, MACS

METHODS = ("l1", "l2", "random", "unstructured")
PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)
_OUT_CHANNEL_FNS = (tp_function.prune_conv_out_channels, tp_function.prune_linear_out_channels)


@dataclass(frozen=True)
class Finetune:
    """Fine-tuning applied to every pruned copy: ``epochs`` passes of Adam(``lr``) on cross-entropy.

    ``loader`` yields batches whose first two items are images ``(N, C, H, W)`` and integer
    labels ``(N,)`` (extra items, e.g. masks, are ignored). ``device``: where to train; ``None``
    trains where the model's parameters are. The model stays on that device afterwards.
    """

    loader: Iterable
    epochs: int = 1
    lr: float = 1e-3
    device: torch.device | str | None = None

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"Finetune epochs must be an integer >= 1, got {self.epochs!r}.")
        if not self.lr > 0:
            raise ValueError(f"Finetune lr must be a positive learning rate such as 1e-3, got {self.lr!r}.")


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


def sweep(
    model: nn.Module,
    example_input: torch.Tensor,
    ratios: Sequence[float],
    method: str = "l2",
    seed: int = 0,
    finetune: Finetune | None = None,
    ignored_layers: Sequence[str | nn.Module] | None = None,
) -> dict[str, nn.Module]:
    """Prune a copy of ``model`` at each ratio; ``model`` itself is never modified.

    Args:
        model: a classifier mapping ``(N, C, H, W)`` images to ``(N, num_classes)`` logits.
        example_input: a batch ``(N, C, H, W)`` on the model's device, used to trace the
            network and count MACs (for one image of this size).
        ratios: fractions in ``[0, 1)`` (a list, tuple or 1-D array); what they remove depends
            on ``method`` (see the module docstring). ``0`` gives an unpruned copy (still fine-tuned when ``finetune`` is set).
        method: one of :data:`METHODS`: ``"l1"``, ``"l2"``, ``"random"``, ``"unstructured"``.
        seed: seeds ``"random"`` channel choice and fine-tuning (batch order, dropout).
        finetune: a :class:`Finetune`, applied to every copy after pruning (for
            ``"unstructured"`` the masks hold during fine-tuning, so pruned weights stay zero).
        ignored_layers: names (``"fc"``) or modules of ``model`` whose outputs are never pruned;
            ``None`` means the classifier's output layer, found automatically.

    Returns:
        ``{"<method>@<ratio:.2f>": pruned copy}`` in the order of ``ratios``, each in eval mode
        and carrying ``pescore_pruning`` (see the module docstring).
    """
    if method not in METHODS:
        raise ValueError(f"Unknown pruning method {method!r}; choose one of {', '.join(map(repr, METHODS))}.")
    ratios = _check_ratios(ratios)
    logits, executed = _trace(model, example_input)
    ignored_names = (
        [_output_layer(executed, logits.shape[1])]
        if ignored_layers is None
        else _layer_names(model, ignored_layers)
    )
    candidates = {}
    for ratio in ratios:
        pruned = copy.deepcopy(model).eval()
        ignored = [pruned.get_submodule(n) for n in ignored_names]
        masked = 0
        if ratio > 0 and method == "unstructured":
            masked = _mask_weights(pruned, ratio, ignored)
        elif ratio > 0:
            _remove_channels(pruned, example_input, ratio, _importance(method, seed), ignored)
        if finetune is not None:
            _finetune(pruned, finetune, seed)
        for module in pruned.modules():
            if hasattr(module, "weight_mask"):
                torch_prune.remove(module, "weight")
        device = next(pruned.parameters()).device  # fine-tuning may have moved it
        macs, params = tp.utils.count_ops_and_params(pruned, example_input[:1].to(device))
        setattr(pruned, PRUNING_ATTRIBUTE, {PRUNER: method, RATIO: ratio, PARAMS: int(params) - masked, MACS: int(macs)})
        candidates[f"{method}@{ratio:.2f}"] = pruned
    return candidates


def _check_ratios(ratios) -> list[float]:
    """Validate ``ratios``; return them as floats whose names ``"@<ratio:.2f>"`` are distinct."""
    values = list(ratios) if isinstance(ratios, Iterable) and not isinstance(ratios, str) else []
    if not values:
        raise ValueError(f"ratios must be a non-empty list of fractions such as [0.1, 0.3, 0.5], got {ratios!r}.")
    for ratio in values:
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= ratio < 1:
            raise ValueError(
                f"Every pruning ratio must be a number in [0, 1), got {ratio!r} in {values!r}; "
                "0.3 removes 30% of the channels (or weights)."
            )
    names = [f"{ratio:.2f}" for ratio in values]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(
                f"Two ratios both round to {name} (names keep two decimals); "
                f"pass ratios that differ at two decimals, got {values!r}."
            )
    return [float(ratio) for ratio in values]


def _importance(method: str, seed: int) -> tp.importance.Importance:
    """The torch-pruning channel importance of a structured ``method``."""
    if method == "random":
        return SeededRandomImportance(seed)
    return FilterNormImportance(p={"l1": 1, "l2": 2}[method])


@torch.no_grad()
def _trace(model: nn.Module, example_input) -> tuple[torch.Tensor, list[tuple[str, torch.Size]]]:
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


def _output_layer(executed: list[tuple[str, torch.Size]], num_classes: int) -> str:
    """Qualified name of the last Conv/Linear layer that ran with ``num_classes`` output channels."""
    matches = [name for name, shape in executed if len(shape) >= 2 and shape[1] == num_classes]
    if not matches:
        raise ValueError(
            f"Could not find the classifier's output layer: no Conv/Linear layer produces {num_classes} "
            "channels; pass ignored_layers=[name of the layer that produces the logits], e.g. ['fc']."
        )
    return matches[-1]


def _layer_names(model: nn.Module, layers: Sequence[str | nn.Module]) -> list[str]:
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


def _remove_channels(model, example_input, ratio: float, importance, ignored: list[nn.Module]) -> None:
    """Remove ``ratio`` of the output channels of every prunable layer of ``model`` in place."""
    # torch-pruning skips a layer entirely when int(C * (1 - ratio)) == 0; give such layers a
    # ratio that keeps exactly one channel instead, so more pruning never means less.
    at_risk = {}
    for module in model.modules():
        if isinstance(module, PRUNABLE) and module not in ignored:
            channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            if int(channels * (1 - ratio)) < 1:
                at_risk[module] = max(0.0, 1 - 1.5 / channels)
    # torch-pruning traces through autograd: frozen parameters would silently prune nothing.
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    model.requires_grad_(True)
    pruner = tp.pruner.BasePruner(
        model,
        example_input,
        importance=importance,
        pruning_ratio=ratio,
        pruning_ratio_dict=at_risk,
        ignored_layers=ignored,
    )
    pruner.step()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(requires_grad[name])


def _mask_weights(model: nn.Module, ratio: float, ignored: list[nn.Module]) -> int:
    """Mask the ``ratio`` smallest-magnitude weights of all prunable layers; return how many."""
    weights = [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE) and m not in ignored]
    torch_prune.global_unstructured(weights, pruning_method=torch_prune.L1Unstructured, amount=ratio)
    return sum(int((module.weight_mask == 0).sum()) for module, _ in weights)


def _finetune(model: nn.Module, finetune: Finetune, seed: int) -> None:
    """Train ``model`` in place for ``finetune.epochs`` epochs; deterministic given ``seed``."""
    device = torch.device(finetune.device) if finetune.device is not None else next(model.parameters()).device
    model.to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=finetune.lr)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        for _ in range(finetune.epochs):
            for batch in finetune.loader:
                images, labels = batch[0].to(device), batch[1].to(device)
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(images), labels).backward()
                optimizer.step()
    model.eval()
