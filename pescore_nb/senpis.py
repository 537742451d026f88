"""SeNPIS-Faster: a filter matters as much as zeroing it changes each class's loss.

SeNPIS (Pachón et al., *SeNPIS: Sequential Network Pruning by class-wise Importance Score*, Applied
Soft Computing 2022; the authors' FlexiPrune code) ranks the filters of one layer at a time on a
class-balanced sample of labelled images (:func:`class_balanced_sample`):

- *ablate* a filter: set its weights and bias to zero (a batch norm after it still adds its shift,
  as in the authors' code). Channels that torch-pruning ties together in one group (a residual
  addition sums them) are ablated together, in every Conv/Linear layer of the group;
- its importance is the mean over the classes ``k`` of ``|loss_k(ablated) - loss_k(original)|``,
  where ``loss_k`` is the mean cross-entropy of class ``k``'s images.

SeNPIS then attenuates the importance of filters whose class-mean feature maps are similar;
SeNPIS-Faster, implemented here, omits that step. :func:`pescore_nb.prune.sweep` prunes the layers
one after another in forward order with this importance (``pruner="senpis"``).

Ablations run in batches: the sample is repeated once per ablated channel, plus one unablated copy,
and a forward hook multiplies each layer's output by a channel mask (zeroing a filter's output
before its batch norm equals zeroing the filter's weights and bias). The original losses come from
the same forward pass as the ablated ones, so a filter that changes nothing scores exactly 0.
The network before the group's layers is the same for every copy, so the sample runs through it once
and is repeated at the group's first layer; a network where a tensor from before that layer joins
one after it (a residual shortcut around the group) cannot be split so, and gets the repeated sample
from its input instead (same scores, up to float rounding). In a torchvision ``VisionTransformer``,
a group inside one encoder block (its MLP) gets the sample repeated at that block's input, and a
group in the stem at its first layer (the batch size is read after the stem while SeNPIS runs). An
attention's filters are its output projection's rows, ablated at the attention's output (batch first).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Sized, cast

import torch
import torch.nn.functional as F
import torch_pruning as tp
import torchvision
from torch import nn
from torch.utils.data import Dataset
from torch_pruning.pruner import function as tp_function

# The torch-pruning functions that remove a Conv/Linear layer's output channels (its filters).
# An attention's are its output projection's rows.
FILTER_FNS = (
    tp_function.prune_conv_out_channels,
    tp_function.prune_depthwise_conv_out_channels,
    tp_function.prune_linear_out_channels,
    tp_function.prune_multihead_attention_out_channels,
)


def class_balanced_sample(data: Dataset, samples_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples_per_class`` images of each class of ``data``, drawn without replacement.

    ``data`` is a map-style Dataset of ``(image (C, H, W), label, ...)`` items; its classes are its
    distinct labels, read from ``data.targets`` when it has them (torchvision's convention), else
    from every item. A ``torch.Generator`` seeded with ``seed`` picks the images (the global RNG is
    untouched). Returns images ``(K * S, C, H, W)`` and int64 labels ``(K * S,)``, class by class in
    increasing label order, for ``K`` classes and ``S = samples_per_class``.
    """
    if isinstance(samples_per_class, bool) or not isinstance(samples_per_class, int) or samples_per_class < 1:
        raise ValueError(f"samples_per_class must be an integer >= 1, got {samples_per_class!r}.")
    count = len(cast(Sized, data))
    if count == 0:
        raise ValueError("data is empty; pass a Dataset of (image, label, ...) items, e.g. the training split.")
    targets = getattr(data, "targets", None)
    labels = torch.as_tensor(targets if targets is not None else [int(data[i][1]) for i in range(count)])
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().flatten()
        if len(members) < samples_per_class:
            raise ValueError(
                f"Class {label} has {len(members)} images in data, fewer than samples_per_class={samples_per_class}; "
                "pass a smaller samples_per_class, or data with more images of every class."
            )
        chosen += members[torch.randperm(len(members), generator=generator)[:samples_per_class]].tolist()
    items = [data[i] for i in chosen]
    return torch.stack([item[0] for item in items]), torch.as_tensor([int(item[1]) for item in items])


def group_filters(group) -> list[tuple[nn.Module, list[int], list[int]]]:
    """``(layer, channels, root channels)`` of each Conv/Linear (or ``nn.MultiheadAttention``, whose
    output projection's rows are its filters) whose filters a torch-pruning group removes.

    ``channels[j]`` of ``layer`` is tied to channel ``root channels[j]`` of the group's root layer.
    """
    return [(item.dep.target.module, item.idxs, item.root_idxs) for item in group if item.dep.handler in FILTER_FNS]


class SenpisImportance(tp.importance.Importance):
    """SeNPIS-Faster importance of a torch-pruning group's channels, measured on ``model`` as it is now.

    ``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)`` are the class-balanced sample, on the model's
    device; the model runs in its current mode (eval in :func:`pescore_nb.prune.sweep`). One forward
    pass carries at most ``images_per_forward`` images (``images_per_forward // N`` copies of the
    sample). Calling it on a group (built with all its channels) returns ``(n_channels,)``: for each
    channel of the group's root layer, the mean over classes of ``|loss_k(ablated) - loss_k(original)|``.
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, images_per_forward: int = 256):
        self.model, self.images, self.labels = model, images, labels
        in_class = labels[:, None] == labels.unique()[None]  # (N, K)
        self.class_means = in_class / in_class.sum(0)  # (N, K): losses (B, N) @ class_means = class losses (B, K)
        self.copies = max(2, images_per_forward // len(labels))
        self.repeat_at_group = True  # False once a network refused it: repeat the sample at the input

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor:
        filters = group_filters(group)
        channels = torch.arange(len(group[0].idxs))
        return torch.cat([self._scores(filters, chunk) for chunk in channels.split(self.copies - 1)])

    def _scores(self, filters, channels: torch.Tensor) -> torch.Tensor:
        """Importance ``(B,)`` of the root channels ``channels`` ``(B,)``, ablated in one forward pass."""
        ablated = torch.cat([torch.tensor([-1]), channels])  # copy 0 ablates nothing
        block = self._block_holding(filters)
        logits: torch.Tensor | None
        if block is not None:
            logits = self._forward(filters, ablated, self.images, repeat_at=block)
        else:
            logits = self._repeat_at_group(filters, ablated) if self.repeat_at_group else None
        if logits is None:
            logits = self._forward(filters, ablated, self.images.repeat(len(ablated), *[1] * (self.images.ndim - 1)))
        losses = F.cross_entropy(logits, self.labels.repeat(len(ablated)), reduction="none")
        class_losses = losses.view(len(ablated), -1) @ self.class_means.to(losses)  # (B + 1, K)
        return (class_losses[1:] - class_losses[0]).abs().mean(1).cpu()

    def _repeat_at_group(self, filters, ablated: torch.Tensor) -> torch.Tensor | None:
        """Logits ``(len(ablated) * N, K)`` of the sample run once up to the group and repeated there, or
        ``None`` (and never again) when the network mixes a tensor from before the group with one after it."""
        try:
            logits = self._forward(filters, ablated, self.images)
        except RuntimeError:  # e.g. a shortcut of N images added to len(ablated) * N
            logits = None
        if logits is None or logits.shape[0] != len(ablated) * len(self.labels):
            self.repeat_at_group = False
            return None
        return logits

    def _block_holding(self, filters) -> nn.Module | None:
        """The encoder block of a torchvision ``VisionTransformer`` that holds every layer of the group
        (its input is the only path into it: the sample can be repeated there), or ``None``."""
        if not isinstance(self.model, torchvision.models.VisionTransformer):
            return None
        layers = {layer for layer, _, _ in filters}
        return next((block for block in self.model.encoder.layers if layers <= set(block.modules())), None)

    def _forward(self, filters, ablated: torch.Tensor, images: torch.Tensor,
                 repeat_at: nn.Module | None = None) -> torch.Tensor:
        """The model's logits on ``images`` with the ablation hooks of ``ablated`` on the group's layers;
        ``repeat_at``: a module whose input is repeated ``len(ablated)`` times before it runs."""
        hooks = [layer.register_forward_hook(_ablation_hook(
                     ablated, idxs, root_idxs, len(self.labels),
                     channels_last=isinstance(layer, (nn.Linear, nn.MultiheadAttention))))
                 for layer, idxs, root_idxs in filters]
        if repeat_at is not None:
            hooks.append(repeat_at.register_forward_pre_hook(
                lambda module, args: (args[0].repeat(len(ablated), *[1] * (args[0].ndim - 1)), *args[1:])))
        try:
            with _batch_read_after_stem(self.model):
                return self.model(images)
        finally:
            for hook in hooks:
                hook.remove()


@contextmanager
def _batch_read_after_stem(model: nn.Module) -> Iterator[None]:
    """In a torchvision ``VisionTransformer``, turn the stem's output ``(B, D, h, w)`` into tokens
    ``(B, h * w, D)`` with ``B`` read from it, not from the images (torchvision's ``_process_input``
    reads it from the images, so a sample repeated inside the stem would fail); other models as they are."""
    if not isinstance(model, torchvision.models.VisionTransformer):
        yield
        return
    model._process_input = lambda images: model.conv_proj(images).flatten(2).transpose(1, 2)
    try:
        yield
    finally:
        del model._process_input


def _ablation_hook(ablated: torch.Tensor, idxs: list[int], root_idxs: list[int], n_images: int, channels_last: bool):
    """Forward hook that zeroes, in copy ``b`` of the repeated sample, the layer's output channels tied to
    root channel ``ablated[b]`` (``-1``: none); the layer's output is ``(len(ablated) * n_images, C, ...)``,
    or ``(n_images, C, ...)``, which it first repeats ``len(ablated)`` times. ``channels_last``: the
    channels are the output's last dimension (a Linear layer: ``(N, C)``, or ``(N, tokens, C)`` in a ViT).
    A tuple output (a batch-first attention's) has its first item masked."""
    kept = torch.as_tensor(root_idxs)[None] != ablated[:, None]  # (B + 1, len(idxs))

    def hook(module, inputs, output):
        if isinstance(output, tuple):  # nn.MultiheadAttention: (attention output, attention weights)
            return (hook(module, inputs, output[0]), *output[1:])
        if output.shape[0] == n_images:
            output = output.repeat(len(ablated), *[1] * (output.ndim - 1))
        channel_dim = output.ndim - 1 if channels_last else 1
        mask = output.new_ones(len(ablated), output.shape[channel_dim])
        mask[:, idxs] = kept.to(mask)
        mask = mask.repeat_interleave(n_images, 0)  # (len(ablated) * n_images, C)
        shape = [mask.shape[0]] + [1] * (output.ndim - 1)
        shape[channel_dim] = mask.shape[1]
        return output * mask.view(shape)

    return hook
