"""Fine-tuning a pruned copy: the :class:`Finetune` recipe, its learning-rate schedules, the training loop."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sized, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

# The learning rate of optimiser step k of K is lr * SCHEDULES[schedule](k / K), k = 0 .. K-1.
SCHEDULES = {
    "constant": lambda progress: 1.0,
    "cosine": lambda progress: 0.5 * (1 + math.cos(math.pi * progress)),
    "linear": lambda progress: 1 - progress,
}


TEMPERATURE = 2.0  # the default softening of distillation


@dataclass(frozen=True)
class Finetune:
    """Fine-tuning applied to every pruned copy: ``epochs`` passes of Adam(``lr``) on cross-entropy,
    or, with ``distill=True``, on the reference's soft outputs (knowledge distillation, Hinton et al.
    2015): the loss is ``temperature**2 * KL(softmax(reference / T) || softmax(copy / T))``, batch mean,
    with the unpruned model passed to :func:`sweep` as the teacher (in eval mode, never trained).

    ``schedule`` (:data:`SCHEDULES`) sets the learning rate of each of the ``K = epochs * batches``
    optimiser steps: ``"constant"`` keeps ``lr``; ``"cosine"`` and ``"linear"`` anneal it towards zero,
    step ``k`` (from 0) using ``lr * (1 + cos(pi * k / K)) / 2`` or ``lr * (1 - k / K)``.

    ``data`` is a map-style Dataset of ``(image (C, H, W), label, ...)`` items (extra items, e.g.
    masks, are ignored). Each fine-tuning shuffles it into batches of ``batch_size`` with its own
    ``torch.Generator`` seeded with the model's seed, and runs with the global RNG forked and seeded
    with the same seed (dropout, augmentation), so the weights it gives depend only on the model,
    this recipe and the seed. ``device``: where to train; ``None`` trains where the model's
    parameters are. The model stays on that device afterwards.
    """

    data: Dataset
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 32
    device: torch.device | str | None = None
    distill: bool = False
    temperature: float = TEMPERATURE
    schedule: str = "cosine"  # benchmarks/demo_design.md: the smaller seed spread

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
        check_count("Finetune epochs", self.epochs)
        if isinstance(self.lr, bool) or not isinstance(self.lr, numbers.Real) or not 0 < self.lr < math.inf:
            raise ValueError(f"Finetune lr must be a positive, finite learning rate such as 1e-3, got {self.lr!r}.")
        check_count("Finetune batch_size", self.batch_size)
        if not isinstance(self.distill, bool):
            raise ValueError(f"Finetune distill must be True or False, got {self.distill!r}.")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, numbers.Real) \
                or not 0 < self.temperature < float("inf"):
            raise ValueError(f"Finetune temperature must be a positive number such as 2.0, got {self.temperature!r}.")
        if not self.distill and self.temperature != TEMPERATURE:
            raise ValueError(f"Finetune temperature={self.temperature!r} does nothing without distill=True (it softens "
                             "the reference's outputs for distillation); pass distill=True, or leave temperature out.")
        if not isinstance(self.schedule, str) or self.schedule not in SCHEDULES:
            raise ValueError(f"Finetune schedule must be one of {', '.join(map(repr, SCHEDULES))}, "
                             f"got {self.schedule!r}.")

    def provenance(self, seed: int) -> dict:
        """The recipe as run with ``seed``, for a model's ``provenance``."""
        recipe = {"epochs": self.epochs, "lr": float(self.lr), "batch_size": self.batch_size, "seed": seed,
                  "images": len(cast(Sized, self.data)), "schedule": self.schedule}
        return {**recipe, "distill": True, "temperature": float(self.temperature)} if self.distill else recipe


def check_count(field: str, value) -> None:
    """Refuse a ``value`` that is not an integer >= 1 (``field`` names it in the error)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be an integer >= 1, got {value!r}.")


def finetune_model(model: nn.Module, finetune: Finetune, seed: int, teacher: nn.Module | None = None) -> None:
    """Train ``model`` in place as ``finetune`` says; its weights depend only on ``seed``.

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
    steps, factor = finetune.epochs * len(batches), SCHEDULES[finetune.schedule]
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step / steps))
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
                schedule.step()
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
