"""Pruning sweeps: the candidate models that PE-score compares with their unpruned reference.

:func:`sweep` copies a model once per pruner and ratio and prunes each copy::

    candidates = sweep(model, torch.randn(1, 3, 64, 64), [0.1, 0.3, 0.5], pruner=["l2", "senpis"],
                       data=train_split, finetune=Finetune(train_split))
    candidates["senpis@0.30"]          # an nn.Module, in eval mode
    candidates["control:finetune"]     # the unpruned model, fine-tuned like the candidates
    candidates["l2@0.30"].pescore_pruning
    # {"pruner": "l2", "ratio": 0.3, "role": "candidate", "params": 2801450, "macs": 39753226,
    #  "provenance": {"pruning_seed": 0, "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 32,
    #                 "seed": 0, "images": 1500}, "pruning_data_digest": None,
    #                 "finetune_data_digest": "9f86d081884c7d65"}}

Pruners (:data:`PRUNERS`) and what ``ratio`` means for each:

- ``"l1"``, ``"l2"``, ``"random"``, ``"taylor"`` and ``"senpis"`` are *structured*: torch-pruning
  removes whole output channels, so the pruned model really is smaller and faster, and every
  module keeps its qualified name (``layer1.0.conv1`` stays ``layer1.0.conv1``, only narrower).
  ``ratio`` is the fraction of output channels removed from every prunable Conv/Linear layer
  (local, layer-wise pruning), counted by one rule for all five: a layer with ``C`` output channels
  keeps ``max(1, int(C * (1 - ratio)))`` of them — a layer is never emptied. Channels tied
  together (residual additions, depthwise convolutions) form one torch-pruning group and are
  removed together. The pruners differ in how they rank a layer's channels (the lowest go):

  - ``"l1"``, ``"l2"`` (filter norm, the PE-score paper's "Weight" method): the p-norm of the
    channel's filter (``p = 1`` or ``2``); for tied channels, the mean of the tied filters' norms.
  - ``"random"``: uniform random numbers drawn from a generator seeded with ``seed``.
  - ``"taylor"``: torch-pruning's first-order Taylor importance (``GroupTaylorImportance``:
    ``|weight * gradient|`` summed over each channel's weights, averaged over the group), with the
    gradients of the cross-entropy on the class-balanced sample of ``data`` (see below).
  - ``"senpis"``: SeNPIS-Faster (:mod:`pescore_nb.senpis`): how much zeroing a channel's filter
    changes each class's cross-entropy on the class-balanced sample. The other pruners rank every
    layer on the unpruned network, then prune; ``"senpis"`` prunes the layers one after another
    in forward order, ranking each on the network already pruned before it, ties broken by
    channel index (the lower index goes first).

  ``"taylor"`` and ``"senpis"`` need ``data=``, a Dataset of ``(image, label, ...)`` items (e.g.
  the training split): they rank on ``samples_per_class`` images of each of its classes, drawn
  with a generator seeded with ``seed`` (:func:`pescore_nb.senpis.class_balanced_sample`), the
  same sample for every ratio and both pruners.
- ``"unstructured"`` zeroes single weights: global magnitude pruning
  (:func:`torch.nn.utils.prune.global_unstructured` with ``L1Unstructured``) over the weight
  tensors of every prunable Conv/Linear layer together, made permanent with
  :func:`torch.nn.utils.prune.remove`. ``ratio`` is the fraction of those weights set to zero
  (``round(ratio * n_weights)`` of them); biases and normalisation layers are untouched.

The classifier's output layer is never pruned, so the logits keep their ``num_classes``
columns: it is found automatically as the last Conv/Linear layer that produces the logits,
and ``ignored_layers=`` replaces that choice (those layers keep their output channels, and
their weights are not masked).

Fine-tuning (a :class:`Finetune`) is reproducible: each model is trained with its own data order
and random numbers, both seeded with ``seed``, so a model's weights never depend on which models
were made before it. With fine-tuning, ``sweep`` also returns a control, ``"control:finetune"``
(:data:`pescore_nb.schema.CONTROL_FINETUNE`): a copy of the unpruned model put through the same
fine-tuning, which tells what fine-tuning alone changes (``controls=False`` leaves it out).

Every returned model carries ``model.pescore_pruning`` (:data:`pescore_nb.schema.PRUNING_ATTRIBUTE`),
which ``evaluate`` turns into the Dataset's ``model`` coordinates:

- ``pruner``, ``ratio``: as named; the control has pruner ``"none"`` and ratio ``0.0``;
- ``role``: ``"candidate"``, or ``"control"`` for the control;
- ``params``, ``macs``: torch-pruning's counter (``tp.utils.count_ops_and_params``), MACs for one
  image of ``example_input``'s size. For ``"unstructured"`` the model stays dense: ``macs`` is
  unchanged and ``params`` is the dense count minus the weights the masks removed;
- ``provenance``, a JSON-serialisable dict: ``pruning_seed`` (``seed``); ``finetune``, the recipe
  (``epochs``, ``lr``, ``batch_size``, ``seed``, ``images``: the size of its dataset) or ``None``;
  ``pruning_data_digest``, the digest of the class-balanced sample for ``"taylor"`` and
  ``"senpis"``, else ``None``; ``finetune_data_digest``, the digest of the whole fine-tuning
  dataset, or ``None``. A digest is the first 16 hex digits of the sha256 of the images' bytes,
  in order, followed by the labels' as int64.
"""

from __future__ import annotations

import copy
import hashlib
import numbers
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import DataLoader, Dataset
from torch_pruning.pruner import function as tp_function
from tqdm.auto import tqdm

from pescore_nb.schema import (
    CANDIDATE, CONTROL, CONTROL_FINETUNE, MACS, PARAMS, PROVENANCE, PRUNER, PRUNING_ATTRIBUTE, RATIO, ROLE, UNPRUNED,
)
from pescore_nb.senpis import SenpisImportance, class_balanced_sample, group_filters

PRUNERS = ("l1", "l2", "random", "taylor", "senpis", "unstructured")
DATA_PRUNERS = ("taylor", "senpis")  # rank channels on a class-balanced sample of `data`
PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)
_OUT_CHANNEL_FNS = (tp_function.prune_conv_out_channels, tp_function.prune_linear_out_channels)


@dataclass(frozen=True)
class Finetune:
    """Fine-tuning applied to every pruned copy: ``epochs`` passes of Adam(``lr``) on cross-entropy,
    or, with ``distill=True``, on the reference's soft outputs (knowledge distillation, Hinton et al.
    2015): the loss is ``temperature**2 * KL(softmax(reference / T) || softmax(copy / T))``, batch mean,
    with the unpruned model passed to :func:`sweep` as the teacher (in eval mode, never trained).

    ``data`` is a map-style Dataset of ``(image (C, H, W), label, ...)`` items (extra items, e.g.
    masks, are ignored). Each fine-tuning shuffles it into batches of ``batch_size`` with its own
    ``torch.Generator`` seeded with ``sweep``'s ``seed``, and runs with the global RNG forked and
    seeded with the same seed (dropout, augmentation), so the weights it gives depend only on the
    model, this recipe and the seed. ``device``: where to train; ``None`` trains where the model's
    parameters are. The model stays on that device afterwards.
    """

    data: Dataset
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 32
    device: torch.device | str | None = None
    distill: bool = False
    temperature: float = 2.0

    def __post_init__(self):
        if isinstance(self.data, DataLoader):
            raise ValueError(
                "Finetune takes the Dataset, not a DataLoader (each fine-tuning shuffles it with its own "
                "seeded generator): pass Finetune(loader.dataset, batch_size=loader.batch_size)."
            )
        if not (hasattr(self.data, "__getitem__") and hasattr(self.data, "__len__")) or len(self.data) == 0:
            raise ValueError(
                f"Finetune data must be a non-empty Dataset of (image, label, ...) items, got {self.data!r}; "
                "pass e.g. the training split."
            )
        _check_count("Finetune epochs", self.epochs)
        if isinstance(self.lr, bool) or not isinstance(self.lr, numbers.Real) or not self.lr > 0:
            raise ValueError(f"Finetune lr must be a positive learning rate such as 1e-3, got {self.lr!r}.")
        _check_count("Finetune batch_size", self.batch_size)
        if not isinstance(self.distill, bool):
            raise ValueError(f"Finetune distill must be True or False, got {self.distill!r}.")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, numbers.Real) \
                or not 0 < self.temperature < float("inf"):
            raise ValueError(f"Finetune temperature must be a positive number such as 2.0, got {self.temperature!r}.")

    def provenance(self, seed: int) -> dict:
        """The recipe as run with ``seed``, for a model's ``provenance``."""
        recipe = {"epochs": self.epochs, "lr": float(self.lr), "batch_size": self.batch_size, "seed": seed,
                  "images": len(self.data)}
        return {**recipe, "distill": True, "temperature": float(self.temperature)} if self.distill else recipe


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
    pruner: str | Sequence[str] = "l2",
    seed: int = 0,
    finetune: Finetune | None = None,
    data: Dataset | None = None,
    samples_per_class: int = 5,
    controls: bool = True,
    ignored_layers: Sequence[str | nn.Module] | None = None,
    progress: bool = False,
) -> dict[str, nn.Module]:
    """Prune a copy of ``model`` with each pruner at each ratio; ``model`` itself is never modified.

    Args:
        model: a classifier mapping ``(N, C, H, W)`` images to ``(N, num_classes)`` logits.
        example_input: a batch ``(N, C, H, W)`` on the model's device, used to trace the
            network and count MACs (for one image of this size).
        ratios: fractions in ``[0, 1)`` (a list, tuple or 1-D array); what they remove depends
            on the pruner (see the module docstring). ``0`` gives an unpruned copy (still
            fine-tuned when ``finetune`` is set).
        pruner: one of :data:`PRUNERS`, or a list of them: every pruner at every ratio.
        seed: seeds the ``"random"`` channel choice, the class-balanced sample and fine-tuning
            (batch order, dropout); the global RNG is left as it was.
        finetune: a :class:`Finetune`, applied to every copy after pruning (for
            ``"unstructured"`` the masks hold during fine-tuning, so pruned weights stay zero).
        data: a Dataset of ``(image, label, ...)`` items (e.g. the training split), from which
            ``"taylor"`` and ``"senpis"`` draw ``samples_per_class`` images of each class.
        samples_per_class: images of each class those pruners rank channels on.
        controls: with ``finetune``, also return ``"control:finetune"``, the unpruned model
            fine-tuned the same way (once per call).
        ignored_layers: names (``"fc"``) or modules of ``model`` whose outputs are never pruned;
            ``None`` means the classifier's output layer, found automatically.
        progress: show a progress bar over the models made.

    Returns:
        ``{"<pruner>@<ratio:.2f>": pruned copy}``, pruner by pruner in the order of ``ratios``,
        then the control; each in eval mode and carrying ``pescore_pruning`` (see the module
        docstring).
    """
    pruners = _check_pruners(pruner)
    ratios = _check_ratios(ratios)
    logits, executed = _trace(model, example_input)
    ignored_names = (
        [_output_layer(executed, logits.shape[1])]
        if ignored_layers is None
        else _layer_names(model, ignored_layers)
    )
    if "senpis" in pruners:
        _refuse_grouped_convolutions(model)
    sample, sample_digest = _pruning_sample(pruners, data, samples_per_class, seed, example_input.device)
    finetune_digest = None if finetune is None else _digest(finetune.data)
    teacher = copy.deepcopy(model).eval().requires_grad_(False) if finetune is not None and finetune.distill else None
    jobs = [(f"{name}@{ratio:.2f}", name, ratio, CANDIDATE) for name in pruners for ratio in ratios]
    if finetune is not None and controls:
        jobs.append((CONTROL_FINETUNE, UNPRUNED, 0.0, CONTROL))
    models = {}
    for key, name, ratio, role in tqdm(jobs, desc="pruning", unit="model", disable=not progress):
        pruned = copy.deepcopy(model).eval()
        ignored = [pruned.get_submodule(n) for n in ignored_names]
        masked = _prune(pruned, name, ratio, example_input, ignored, [n for n, _ in executed], seed, sample)
        if finetune is not None:
            _finetune(pruned, finetune, seed, teacher)
        for module in pruned.modules():
            if hasattr(module, "weight_mask"):
                torch_prune.remove(module, "weight")
        device = next(pruned.parameters()).device  # fine-tuning may have moved it
        macs, params = tp.utils.count_ops_and_params(pruned, example_input[:1].to(device))
        provenance = {
            "pruning_seed": seed,
            "finetune": None if finetune is None else finetune.provenance(seed),
            "pruning_data_digest": sample_digest if name in DATA_PRUNERS else None,
            "finetune_data_digest": finetune_digest,
        }
        setattr(pruned, PRUNING_ATTRIBUTE, {PRUNER: name, RATIO: ratio, ROLE: role, PARAMS: int(params) - masked,
                                            MACS: int(macs), PROVENANCE: provenance})
        models[key] = pruned
    return models


def _check_pruners(pruner) -> list[str]:
    """``pruner`` as a list of distinct names from :data:`PRUNERS` (a string is one pruner)."""
    names = [pruner] if isinstance(pruner, str) or not isinstance(pruner, Iterable) else list(pruner)
    if not names:
        raise ValueError(
            f"pruner must be a pruner name or a non-empty list of them such as ['l2', 'senpis'], got {pruner!r}."
        )
    for name in names:
        if name not in PRUNERS:
            raise ValueError(f"Unknown pruner {name!r}; choose one of {', '.join(map(repr, PRUNERS))}.")
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"pruner {name!r} is listed twice in {names!r}; list each pruner once.")
    return names


def _check_count(field: str, value) -> None:
    """Refuse a ``value`` that is not an integer >= 1 (``field`` names it in the error)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be an integer >= 1, got {value!r}.")


def _pruning_sample(pruners: list[str], data, samples_per_class: int, seed: int, device: torch.device):
    """The class-balanced sample ``(images (N, C, H, W), labels (N,))`` of ``data`` on ``device``, and its
    digest; ``(None, None)`` when no pruner needs it."""
    needing = [name for name in pruners if name in DATA_PRUNERS]
    if not needing:
        return None, None
    if data is None:
        raise ValueError(
            f"pruner {needing[0]!r} ranks channels on labelled images: pass data=<a Dataset of (image, label, ...) "
            f"items>, e.g. the training split; it uses samples_per_class={samples_per_class} images of each class."
        )
    images, labels = class_balanced_sample(data, samples_per_class, seed)
    return (images.to(device), labels.to(device)), _digest(list(zip(images, labels)))


def _digest(data) -> str:
    """First 16 hex digits of the sha256 of the images' bytes, in order, then the labels' as int64.

    ``data``: a Dataset (or sequence) of ``(image (C, H, W), label, ...)`` items.
    """
    sha, labels = hashlib.sha256(), []
    for i in range(len(data)):
        image, label, *_ = data[i]
        sha.update(image.detach().cpu().contiguous().numpy().tobytes())
        labels.append(int(label))
    sha.update(torch.tensor(labels, dtype=torch.int64).numpy().tobytes())
    return sha.hexdigest()[:16]


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


def _importance(pruner: str, seed: int) -> tp.importance.Importance:
    """The torch-pruning channel importance of ``"l1"``, ``"l2"`` or ``"random"``."""
    if pruner == "random":
        return SeededRandomImportance(seed)
    return FilterNormImportance(p={"l1": 1, "l2": 2}[pruner])


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


def _prune(model: nn.Module, pruner: str, ratio: float, example_input: torch.Tensor, ignored: list[nn.Module],
           order: list[str], seed: int, sample: tuple[torch.Tensor, torch.Tensor] | None) -> int:
    """Prune ``model`` in place with ``pruner`` at ``ratio``; return how many weights masks zero.

    ``order``: qualified names of the Conv/Linear layers in forward order; ``sample``: the
    class-balanced ``(images (N, C, H, W), labels (N,))`` on the model's device, or ``None``.
    """
    if ratio == 0 or pruner == UNPRUNED:
        return 0
    if pruner == "unstructured":
        return _mask_weights(model, ratio, ignored)
    with _all_trainable(model):
        if pruner == "senpis":
            _remove_channels_in_order(model, example_input, ratio, SenpisImportance(model, *sample), ignored, order)
        elif pruner == "taylor":
            images, labels = sample
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            _remove_channels(model, example_input, ratio, tp.importance.GroupTaylorImportance(), ignored)
            model.zero_grad(set_to_none=True)
        else:
            _remove_channels(model, example_input, ratio, _importance(pruner, seed), ignored)
    return 0


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
    # torch-pruning keeps int(C * (1 - ratio)) channels and skips a layer entirely when that is 0;
    # give such layers a ratio that keeps exactly one channel instead, so more pruning never means less.
    at_risk = {}
    for module in model.modules():
        if isinstance(module, PRUNABLE) and module not in ignored:
            channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            if int(channels * (1 - ratio)) < _channels_kept(channels, ratio):
                at_risk[module] = max(0.0, 1 - 1.5 / channels)
    pruner = tp.pruner.BasePruner(
        model,
        example_input,
        importance=importance,
        pruning_ratio=ratio,
        pruning_ratio_dict=at_risk,
        ignored_layers=ignored,
    )
    pruner.step()


def _remove_channels_in_order(model, example_input, ratio: float, importance, ignored: list[nn.Module],
                              order: list[str]) -> None:
    """Remove ``ratio`` of the output channels of every prunable layer of ``model`` in place, one
    torch-pruning group after another in the forward ``order`` of their first layer.

    ``importance`` ranks a group's channels ``(n_channels,)`` on the network already pruned before
    it; the lowest go, ties broken by channel index (the lower index goes first).
    """
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    ignored = {module for layer in ignored for module in layer.modules()}
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
        n_removed = channels - _channels_kept(channels, ratio)
        if n_removed == 0 or tied & ignored:
            continue
        removed = torch.sort(importance(group), stable=True).indices[:n_removed]
        graph.get_pruning_group(layer, prune_out_channels, sorted(removed.tolist())).prune()


def _refuse_grouped_convolutions(model: nn.Module) -> None:
    """``"senpis"`` removes single channels, which a grouped (not depthwise) convolution cannot lose."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd) and module.groups not in (1, module.out_channels):
            raise ValueError(
                f"pruner 'senpis' cannot prune the grouped convolution {name!r} (groups={module.groups}); "
                "use pruner='l2' or 'taylor' for this model."
            )


def _mask_weights(model: nn.Module, ratio: float, ignored: list[nn.Module]) -> int:
    """Mask the ``ratio`` smallest-magnitude weights of all prunable layers; return how many."""
    weights = [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE) and m not in ignored]
    torch_prune.global_unstructured(weights, pruning_method=torch_prune.L1Unstructured, amount=ratio)
    return sum(int((module.weight_mask == 0).sum()) for module, _ in weights)


def _finetune(model: nn.Module, finetune: Finetune, seed: int, teacher: nn.Module | None = None) -> None:
    """Train ``model`` in place for ``finetune.epochs`` epochs; its weights depend only on ``seed``.

    With a ``teacher`` (``finetune.distill``: a frozen copy of the unpruned model, in eval mode), the
    loss is the distillation loss of :class:`Finetune`; the teacher moves to the training device.
    """
    device = torch.device(finetune.device) if finetune.device is not None else next(model.parameters()).device
    if teacher is not None:
        teacher.to(device)
    model.to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=finetune.lr)
    order = torch.Generator().manual_seed(seed)
    batches = DataLoader(finetune.data, finetune.batch_size, shuffle=True, generator=order)
    with _seeded_rng(seed, device):
        for _ in range(finetune.epochs):
            for images, labels, *_ in batches:
                optimizer.zero_grad(set_to_none=True)
                images = images.to(device)
                if teacher is None:
                    loss = F.cross_entropy(model(images), labels.to(device))
                else:
                    loss = _distillation_loss(model(images), teacher(images), finetune.temperature)
                loss.backward()
                optimizer.step()
    model.zero_grad(set_to_none=True)
    model.eval()


def _distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T**2 * KL(softmax(teacher / T) || softmax(logits / T))``, mean over the batch; logits ``(N, K)``."""
    return F.kl_div(F.log_softmax(logits / temperature, dim=1), F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True) * temperature ** 2


@contextmanager
def _seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNG of the CPU (and of ``device``, a GPU) with ``seed``; restore both on exit."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield
