"""Built-in datasets: synthetic ``shapes``, scikit-learn's ``digits``, and a user's ``image_folder``.

Every dataset yields ``(image, label)`` with ``image`` a float32 tensor ``(C, H, W)`` in ``[0, 1]``
and ``label`` an ``int``, and has a ``classes`` list of class names. The models of
:mod:`pescore_nb.zoo` take these images as they are (any normalisation lives inside the model).

Train and test splits never share images::

    train, test = shapes(4000, split="train"), shapes(600, split="test")
    train, test = digits("train"), digits("test")
    train, test = builtin("shapes", "train"), builtin("shapes", "test")   # the zoo's splits
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import Dataset
from torchvision import datasets, transforms

SPLITS = ("train", "test")
SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageTensorDataset(Dataset):
    """Images held in memory as uint8, served as float32 in ``[0, 1]``.

    Attributes:
        images:  uint8 ``(N, C, H, W)``.
        targets: int64 ``(N,)``, the class index of each image.
        classes: the class names; ``classes[targets[i]]`` names image ``i``.
        masks:   bool ``(N, H, W)``, the ground-truth object pixels of each image, or ``None``
                 when the dataset has no object masks.
        name:    what the data set is, e.g. ``"shapes (synthetic, test split)"``; :func:`pescore_nb.evaluate`
                 records it as the results' ``dataset_name`` (the report names the data set with it).
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes: list[str],
                 masks: torch.Tensor | None = None, name: str | None = None):
        self.images, self.targets, self.classes, self.masks = images, targets, classes, masks
        self.name = name

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float().div_(255), int(self.targets[i])


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a split; use one of {SPLITS}.")
    return SPLITS.index(split)


# ---------------------------------------------------------------- shapes
def _object_mask(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pixels of shape ``label`` in object coordinates ``u, v`` (rotated, unit circumradius)."""
    rho = np.hypot(u, v)
    name = SHAPE_CLASSES[label]
    if name == "circle":
        return rho <= 1
    if name == "square":
        return np.maximum(abs(u), abs(v)) <= 0.7
    if name == "triangle":  # equilateral, inradius 0.5: inside all three edges
        normals = np.pi / 2 + 2 * np.pi / 3 * np.arange(3)
        return np.all([u * np.cos(a) + v * np.sin(a) <= 0.5 for a in normals], axis=0)
    if name == "star":  # five points: the radius falls linearly from 1 at a tip to 0.4 between
        tip = np.abs((np.arctan2(v, u) * 5 / (2 * np.pi)) % 1 - 0.5) * 2
        return rho <= 0.4 + 0.6 * tip
    if name == "cross":
        return ((abs(u) <= 0.28) & (abs(v) <= 0.95)) | ((abs(v) <= 0.28) & (abs(u) <= 0.95))
    return (rho <= 1) & (rho >= 0.55)  # ring


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """An RGB colour at least 0.45 away (Euclidean) from each background colour ``(k, 3)``."""
    while True:
        colour = rng.uniform(0, 1, 3)
        if np.linalg.norm(background - colour, axis=1).min() >= 0.45:
            return colour


def _draw_shapes_image(rng: np.random.Generator, label: int, size: int, scale: tuple[float, float],
                       distractors: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One cluttered image float ``(size, size, 3)`` with its object's mask bool ``(size, size)``."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    # Textured background: two colours blended by smooth noise, plus stripes.
    background = rng.uniform(0, 1, (2, 3))
    coarse = torch.from_numpy(rng.uniform(0, 1, (1, 1, 5, 5)))
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0, 0]
    blend = smooth.clamp(0, 1).numpy()[..., None]
    angle, frequency, phase = rng.uniform(0, np.pi), rng.uniform(2, 6) / size, rng.uniform(0, 2 * np.pi)
    stripes = 0.12 * np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + phase)
    image = background[0] * (1 - blend) + background[1] * blend + stripes[..., None]
    # Distractors: thin line segments and small dots in random colours.
    for _ in range(rng.integers(distractors[0], distractors[1] + 1)):
        x0, y0 = rng.uniform(0, size, 2)
        colour = rng.uniform(0, 1, 3)
        if rng.uniform() < 0.5:
            direction, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6) * size
            t = np.clip((x - x0) * np.cos(direction) + (y - y0) * np.sin(direction), 0, length)
            near = np.hypot(x - x0 - t * np.cos(direction), y - y0 - t * np.sin(direction))
            image[near <= rng.uniform(0.5, 1.0)] = colour
        else:
            image[np.hypot(x - x0, y - y0) <= rng.uniform(1, 0.05 * size + 1)] = colour
    # The object: random scale, position, rotation; a colour that stands out from the background.
    radius = rng.uniform(*scale) * size
    cx, cy = rng.uniform(radius + 1, size - radius - 1, 2)
    rotation = rng.uniform(0, 2 * np.pi)
    dx, dy = (x - cx) / radius, (y - cy) / radius
    painted = _object_mask(label, dx * np.cos(rotation) + dy * np.sin(rotation),
                           -dx * np.sin(rotation) + dy * np.cos(rotation))
    image[painted] = _contrasting_colour(rng, background)
    image += rng.normal(0, 0.03, image.shape)
    # The mask is the region the object's outline encloses: a ring's hole belongs to it (the hole
    # is what tells a ring from a circle, so a model that looks there looks at the object).
    mask = ndimage.binary_fill_holes(painted)
    return np.clip(image, 0, 1), mask


def shapes(n: int, size: int = 64, seed: int = 0, split: str = "train", *,
           scale: tuple[float, float] = (0.25, 0.38), distractors: tuple[int, int] = (0, 2)) -> ImageTensorDataset:
    """``n`` synthetic images of six shapes on cluttered, textured backgrounds.

    Classes (balanced): circle, square, triangle, star, cross, ring, each at a random position,
    scale (circumradius drawn uniformly in ``scale``, as fractions of ``size``), rotation and
    colour, over a two-colour noise texture with stripes, ``distractors`` (an inclusive range per
    image) thin lines and dots, and pixel noise. The defaults are the demo's (see
    ``benchmarks/demo_design.md``): with at most two distractors and objects of 25-38 % of the
    size, the zoo VGG's maps are more reproducible across training seeds and better grounded.

    Returns an :class:`ImageTensorDataset`: images ``(3, size, size)``, and ``masks``
    ``(n, size, size)``, True on the object's region: where its colour was painted, and the hole
    of a ring (the hole is what tells a ring from a circle, so a CAM that looks there looks at
    the object).
    The same arguments give identical bytes; ``split="train"`` and ``split="test"`` draw from
    independent random streams of the same ``seed``, so the two splits never share an image.
    """
    if n < 1 or size < 16:
        raise ValueError(f"shapes(n={n}, size={size}): need n >= 1 and size >= 16 pixels.")
    if not 0 < scale[0] <= scale[1] <= 0.45:
        raise ValueError(f"shapes(scale={scale}): the circumradius range, as fractions of size, needs "
                         "0 < low <= high <= 0.45 so that the object fits, e.g. (0.25, 0.38).")
    if not 0 <= distractors[0] <= distractors[1]:
        raise ValueError(f"shapes(distractors={distractors}): the range of distractors per image needs "
                         "0 <= low <= high, e.g. (0, 2).")
    rng = np.random.default_rng([seed, _split_index(split)])
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES))
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), bool)
    for i, label in enumerate(labels):
        image, masks[i] = _draw_shapes_image(rng, int(label), size, scale, distractors)
        images[i] = np.rint(image * 255)
    return ImageTensorDataset(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                              torch.from_numpy(labels).long(), list(SHAPE_CLASSES),
                              torch.from_numpy(masks), name=f"shapes (synthetic, {split} split)")


# ---------------------------------------------------------------- digits
def digits(split: str = "train", size: int = 32, test_fraction: float = 0.3) -> ImageTensorDataset:
    """scikit-learn's 1797 handwritten 8x8 digits, bilinearly upsampled to ``size``.

    Images are ``(3, size, size)``: the grey level repeated over three channels, so the same
    models and overlays serve every built-in dataset. ``classes`` is ``"0"`` .. ``"9"``; ``masks``
    is ``None``. The split is stratified and fixed (``random_state=0``): with the default
    ``test_fraction`` the train split has 1257 images and the test split 540, and none is in both.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    index = _split_index(split)
    bunch = load_digits()
    positions = train_test_split(np.arange(len(bunch.target)), test_size=test_fraction,
                                 random_state=0, stratify=bunch.target)[index]
    positions = np.sort(positions)
    pixels = torch.from_numpy(bunch.images[positions] / 16.0).float().unsqueeze(1)
    pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    images = pixels.clamp(0, 1).mul(255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return ImageTensorDataset(images, torch.from_numpy(bunch.target[positions]).long(),
                              [str(d) for d in range(10)], name=f"digits (scikit-learn, {split} split)")


# ---------------------------------------------------------------- a user's folder
class ImageFolderDataset(datasets.ImageFolder):
    """torchvision's ImageFolder with ``masks = None`` (a folder carries no object masks) and ``name``,
    the folder."""

    masks = None

    @property
    def name(self) -> str:
        return f"image folder {self.root}"


def image_folder(path: str | Path, size: int = 224, normalize: bool = False) -> ImageFolderDataset:
    """Images from ``path/<class name>/<image file>``; ``classes`` are the sub-folder names, sorted.

    Each image is resized (shorter side to ``size``), center-cropped to ``(3, size, size)`` and
    scaled to ``[0, 1]``. ``normalize=True`` also applies the ImageNet mean and std, as
    torchvision's pretrained models expect; leave it False for models that normalise inside.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image_folder: {root} is not a folder; pass a folder holding one "
                                "sub-folder of images per class, e.g. data/cat/1.jpg, data/dog/2.jpg.")
    if not any(child.is_dir() for child in root.iterdir()):
        raise ValueError(f"image_folder: {root} has no class sub-folders; put each class's images in "
                         "its own sub-folder, e.g. data/cat/1.jpg, data/dog/2.jpg.")
    steps = [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()]
    if normalize:
        steps.append(transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    try:
        return ImageFolderDataset(str(root), transform=transforms.Compose(steps))
    except FileNotFoundError as error:  # a class folder without any image file
        raise FileNotFoundError(f"image_folder: {error}. Every class sub-folder of {root} needs at "
                                "least one image (.jpg, .png, ...).") from None


# ---------------------------------------------------------------- the zoo's splits
BUILTIN = {
    "shapes": {"train": lambda: shapes(3000, 64, seed=0, split="train"),
               "test": lambda: shapes(600, 64, seed=0, split="test")},
    "digits": {"train": lambda: digits("train"), "test": lambda: digits("test")},
}


def builtin(name: str, split: str = "test") -> ImageTensorDataset:
    """The split of a built-in dataset that :func:`pescore_nb.zoo.load` trains and tests on.

    ``shapes``: 3000 train / 600 test images of 64x64; ``digits``: 1257 train / 540 test of 32x32.
    """
    if name not in BUILTIN:
        raise ValueError(f"No built-in dataset {name!r}; use one of {sorted(BUILTIN)}, "
                         "or image_folder(path) for your own images.")
    _split_index(split)
    return copy.deepcopy(_generated(name, split))  # a copy: changing it never changes a later call's


@functools.cache
def _generated(name: str, split: str) -> ImageTensorDataset:
    """The split of a built-in dataset, generated once per process (``shapes``' 3,000 images take seconds)."""
    return BUILTIN[name][split]()
