"""Small CNNs, trained deterministically on the CPU and cached on disk.

    model = zoo.load("vgg", "shapes")        # trains once (a minute or two), then loads from the cache
    zoo.accuracy(model, data.builtin("shapes", "test"))

Models take the images of :mod:`pescore_nb.data` as they are: ``(N, 3, H, W)`` in ``[0, 1]``
(batch norm after the first convolution does the normalising) and return logits ``(N, classes)``.
Every ReLU is out of place, so any module's output can be hooked for a CAM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Sized, cast

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.models.vision_transformer import ConvStemConfig

from pescore_nb import data as datasets

CACHE_ENV = "PESCORE_CACHE"
TRAINING_THREADS = 2
VIT_EPOCHS = 20


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU()]


class VGG(nn.Module):
    """A small VGG: ``features`` (conv-bn-relu blocks and max pools), global average pool, ``classifier``.

    ``config`` lists the output channels of each 3x3 convolution, ``"M"`` a 2x2 max pool, as in
    torchvision's VGG. With the default config, ``cam_layers`` is ``("features.16",)``: the ReLU
    after the last convolution, at 1/4 of the input size (16x16 maps of a 64x64 image). Two pools,
    not three: at 1/8 the coarse maps cannot stay on a shape; and the ReLU before it
    (``features.13``) puts only a third of its Grad-CAM++ energy on the object, so it is not
    reported (see ``benchmarks/demo_design.md``).
    """

    def __init__(self, num_classes: int, config: tuple = (16, "M", 32, "M", 64, 64, 128),
                 in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += _conv_bn_relu(in_channels, item)
                in_channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(in_channels, num_classes))

    @property
    def cam_layers(self) -> tuple[str, ...]:
        """Qualified name of the ReLU after the last convolution, in a tuple."""
        relus = [f"features.{i}" for i, layer in enumerate(self.features) if isinstance(layer, nn.ReLU)]
        return tuple(relus[-1:])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images -> ``(N, num_classes)`` logits."""
        return self.classifier(torch.flatten(self.avgpool(self.features(images)), 1))


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3x3 conv-bn, a shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class ResNet(nn.Module):
    """A small ResNet like torchvision's: a stem (``conv1``, ``bn1``, ``relu``, ``maxpool``),
    ``layer1`` .. ``layerN`` of basic blocks, ``avgpool``, ``fc``.

    ``widths`` gives each layer's channels; the stem halves the resolution, and so does every
    layer after the first. With the default widths, ``cam_layers`` are ``layer2`` and ``layer3``,
    at 1/4 and 1/8 of the input size.
    """

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64),
                 blocks_per_layer: int = 1, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        in_channels = widths[0]
        for number, width in enumerate(widths, start=1):
            stride = 1 if number == 1 else 2
            blocks = [BasicBlock(in_channels, width, stride)]
            blocks += [BasicBlock(width, width) for _ in range(blocks_per_layer - 1)]
            self.add_module(f"layer{number}", nn.Sequential(*blocks))
            in_channels = width
        self.num_layers = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    @property
    def cam_layers(self) -> tuple[str, ...]:
        """The outputs of the last two layers (each ends in an out-of-place ReLU)."""
        return tuple(f"layer{number}" for number in range(max(1, self.num_layers - 1), self.num_layers + 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images -> ``(N, num_classes)`` logits."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        for number in range(1, self.num_layers + 1):
            x = getattr(self, f"layer{number}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ViT(torchvision.models.VisionTransformer):
    """A small torchvision ``VisionTransformer`` with a convolutional stem: ``stem`` lists the
    ``(channels, stride)`` of its 3x3 conv-bn-relu layers (the default takes a 64x64 image to an
    8x8 token grid), then ``num_layers`` encoder blocks of ``num_heads`` heads, width ``hidden_dim``.
    A stem of convolutions instead of a patchify layer is what lets a ViT learn from a few thousand
    images (Xiao et al. 2021, "Early convolutions help transformers see better"); the recipes tried
    are recorded in ``benchmarks/vit_design.md``.

    ``cam_layers`` is the last block's input norm, ``encoder.layers.encoder_layer_<L-1>.ln_1``: the
    last block's output reaches the head only through the class token, so its patch tokens get no
    gradient. Its output is tokens ``(N, 1 + 64, hidden_dim)``, which :mod:`pescore_nb.layouts`
    folds to ``(N, hidden_dim, 8, 8)`` maps for any ``VisionTransformer``.
    """

    def __init__(self, num_classes: int, image_size: int = 64,
                 stem: tuple[tuple[int, int], ...] = ((16, 2), (32, 2), (64, 1), (64, 2)),
                 num_layers: int = 4, num_heads: int = 4, hidden_dim: int = 64, mlp_dim: int = 128):
        stem_layers = [ConvStemConfig(out_channels=channels, kernel_size=3, stride=stride) for channels, stride in stem]
        super().__init__(image_size=image_size, patch_size=math.prod(stride for _, stride in stem),
                         num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim,
                         num_classes=num_classes, conv_stem_configs=stem_layers)

    @property
    def cam_layers(self) -> tuple[str, ...]:
        """The last encoder block's input layer norm, in a tuple."""
        return (f"encoder.layers.encoder_layer_{len(self.encoder.layers) - 1}.ln_1",)

    def reset_parameters(self) -> None:
        """Draw the parameters that no submodule's ``reset_parameters`` covers: the class token
        (zeros), the position embedding (normal, std 0.02) and each attention's input projection,
        as torchvision initialises them. :func:`train` calls it, then every submodule's."""
        nn.init.zeros_(self.class_token)
        nn.init.normal_(self.encoder.pos_embedding, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.MultiheadAttention):
                module._reset_parameters()


@contextlib.contextmanager
def _deterministic(threads: int):
    """Deterministic algorithms and a fixed thread count inside the block; restored after."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(previous_threads)


def train(model: nn.Module, train_data: Dataset, *, epochs: int = 10, batch_size: int = 32,
          lr: float = 3e-3, weight_decay: float = 5e-4, augment: bool = False, seed: int = 0,
          progress: bool = False) -> nn.Module:
    """Train ``model`` from scratch, in place, on the CPU, with AdamW and a one-cycle schedule.

    The weights are re-initialised from ``seed`` first; returns ``model`` in eval mode.
    ``train_data`` yields ``(image (C, H, W), label)``. ``augment=True`` turns each batch by a
    random quarter turn and mirrors it at random, for classes that do not change under rotation
    (shapes, not digits). The initial weights, the shuffling, the augmentation and the dropout all
    come from ``seed``, and the arithmetic is deterministic on a fixed number of threads, so the
    same arguments give bit-identical weights on the same machine and torch build.
    """
    from tqdm.auto import tqdm

    with _deterministic(TRAINING_THREADS):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        loader = DataLoader(train_data, batch_size=batch_size, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(seed))
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * len(loader))
        turns = torch.Generator().manual_seed(seed + 1)
        model.train()
        for _ in tqdm(range(epochs), desc=f"training {type(model).__name__}", disable=not progress):
            for images, labels in loader:
                if augment:
                    quarter_turns = int(torch.randint(4, (), generator=turns))
                    images = torch.rot90(images, quarter_turns, (2, 3))
                    images = images.flip(3) if torch.randint(2, (), generator=turns) else images
                optimizer.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(images), labels).backward()
                optimizer.step()
                schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset, batch_size: int = 256,
             device: torch.device | str | None = None) -> float:
    """Fraction of ``data`` that ``model`` classifies correctly, in eval mode (its mode is restored).

    ``device`` defaults to the device of the model's first parameter.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for images, labels in DataLoader(data, batch_size=batch_size):
            correct += (model(images.to(device)).argmax(1).cpu() == labels).sum().item()
    finally:
        model.train(was_training)
    return correct / len(cast(Sized, data))


ZooModel = VGG | ResNet | ViT
ARCHITECTURES: dict[str, type[VGG] | type[ResNet] | type[ViT]] = {"vgg": VGG, "resnet": ResNet, "vit": ViT}
TRAINING = {  # train() hyper-parameters for each built-in dataset
    "shapes": {"epochs": 10, "batch_size": 32, "lr": 3e-3, "weight_decay": 5e-4, "augment": True, "seed": 0},
    "digits": {"epochs": 8, "batch_size": 32, "lr": 3e-3, "weight_decay": 5e-4, "augment": False, "seed": 0},
}
TRAINING_BY_ARCHITECTURE = {  # what differs for an architecture: a ViT needs more epochs than the CNNs
    "vit": {"epochs": VIT_EPOCHS},  # benchmarks/vit_training.py times it against the VGG
}


def default_cache_dir() -> Path:
    """Where trained models are kept: ``$PESCORE_CACHE`` if set, else ``~/.cache/pescore_nb``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pescore_nb").expanduser()


def _recipe_key(model: nn.Module, train_data: datasets.ImageTensorDataset, training: dict) -> str:
    """A content hash of the architecture, the training images and labels, and the hyper-parameters."""
    digest = hashlib.sha256()
    digest.update(repr(model).encode())
    digest.update(train_data.images.numpy().tobytes())
    digest.update(train_data.targets.numpy().tobytes())
    digest.update(json.dumps({**training, "threads": TRAINING_THREADS}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def training(arch: str, dataset: str, seed: int = 0) -> dict:
    """The :func:`train` arguments of the zoo's ``arch`` on ``dataset``, with ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 (0 is the zoo's reference, 1 its twin), got {seed!r}.")
    return {**TRAINING[dataset], **TRAINING_BY_ARCHITECTURE.get(arch, {}), "seed": seed}


def _recipe(arch: str, dataset: str, cache_dir: str | Path | None,
            seed: int = 0) -> tuple[ZooModel, datasets.ImageTensorDataset, Path]:
    """The untrained model, its training split, and the cache file of its trained weights."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"No architecture {arch!r} in the zoo; use one of {sorted(ARCHITECTURES)}.")
    if dataset not in TRAINING:
        raise ValueError(f"The zoo has no models for dataset {dataset!r}; use one of {sorted(TRAINING)}.")
    train_data = datasets.builtin(dataset, "train")
    model = build(arch, num_classes=len(train_data.classes), image_size=train_data.images.shape[-1])
    folder = Path(cache_dir or default_cache_dir()).expanduser()
    key = _recipe_key(model, train_data, training(arch, dataset, seed))
    return model, train_data, folder / f"{arch}-{dataset}-{key}.pt"


def build(arch: str, num_classes: int, image_size: int) -> ZooModel:
    """An untrained zoo ``arch`` for ``num_classes`` classes of square ``image_size`` images."""
    if arch == "vit":
        return ViT(num_classes, image_size=image_size)
    return ARCHITECTURES[arch](num_classes=num_classes)


def cam_layers(arch: str = "vgg", dataset: str = "shapes") -> tuple[str, ...]:
    """The ``cam_layers`` of the zoo's ``arch`` for ``dataset``, without training or loading it."""
    return _recipe(arch, dataset, None)[0].cam_layers


def cached_path(arch: str = "vgg", dataset: str = "shapes", *, seed: int = 0,
                cache_dir: str | Path | None = None) -> Path:
    """The file in which :func:`load` keeps (or will keep) the trained weights of ``arch`` on ``dataset``."""
    return _recipe(arch, dataset, cache_dir, seed)[2]


def load(arch: str = "vgg", dataset: str = "shapes", *, seed: int = 0, cache_dir: str | Path | None = None,
         train_if_missing: bool = True, progress: bool = True) -> ZooModel:
    """A model of ``arch`` ("vgg", "resnet" or "vit") trained on the built-in ``dataset`` ("shapes" or "digits").

    The first call trains it on ``data.builtin(dataset, "train")`` (deterministic, on the CPU: a
    minute or two on 2 idle cores, longer on a busy machine) and saves its state_dict as ``<cache>/<arch>-<dataset>-<hash>.pt``, the
    hash covering the architecture, the training data and the hyper-parameters; later calls load
    that file with ``torch.load(weights_only=True)``. ``cache_dir`` defaults to :func:`default_cache_dir`.
    ``seed`` seeds the initial weights, the batch order, the augmentation and the dropout; it is
    part of the cache key. Seed 0 is the zoo's reference; ``seed=1`` gives its *twin* (the same
    architecture and recipe, another seed), the ``control:twin`` that calibrates PE.
    Returns the model in eval mode, on the CPU, taking ``(N, 3, H, W)`` images in ``[0, 1]``.
    """
    model, train_data, path = _recipe(arch, dataset, cache_dir, seed)
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as error:
            raise RuntimeError(f"The cached model {path} does not load as a {arch} state_dict with "
                               f"weights_only=True ({error}); delete the file to retrain it.") from None
        return model.eval()
    if not train_if_missing:
        raise FileNotFoundError(f"No cached {arch} model for {dataset} at {path}; call "
                                f"load({arch!r}, {dataset!r}) with train_if_missing=True to train it.")
    train(model, train_data, **training(arch, dataset, seed), progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    torch.save(model.state_dict(), partial)
    os.replace(partial, path)
    return model
