import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from pescore_nb import data


def test_shapes_same_arguments_give_identical_bytes():
    first, second = data.shapes(24, size=32, seed=3), data.shapes(24, size=32, seed=3)
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.masks, second.masks)
    assert torch.equal(first.targets, second.targets)
    assert not torch.equal(first.images, data.shapes(24, size=32, seed=4).images)


def test_shapes_items_and_attributes():
    shapes = data.shapes(12, size=40)
    image, label = shapes[5]
    assert image.dtype == torch.float32 and image.shape == (3, 40, 40)
    assert 0 <= image.min() and image.max() <= 1
    assert isinstance(label, int) and label == shapes.targets[5]
    assert shapes.classes == ["circle", "square", "triangle", "star", "cross", "ring"]
    assert shapes.masks.dtype == torch.bool and shapes.masks.shape == (12, 40, 40)
    assert torch.bincount(shapes.targets).tolist() == [2] * 6  # balanced


def test_shapes_train_and_test_share_no_image():
    train = data.shapes(60, size=32, split="train")
    test = data.shapes(60, size=32, split="test")
    assert not {bytes(x.numpy()) for x in train.images} & {bytes(x.numpy()) for x in test.images}


def ring_hole(mask: torch.Tensor) -> torch.Tensor:
    """The hole of a ring whose mask is the filled disk ``(H, W)``: within 0.55 of its radius of its
    centre (the ring's inner edge in ``data._object_mask``), plus a pixel for the rasterised edge."""
    y, x = torch.meshgrid(torch.arange(mask.shape[0]) + 0.5, torch.arange(mask.shape[1]) + 0.5, indexing="ij")
    cy, cx = y[mask].mean(), x[mask].mean()
    radius = (mask.sum() / torch.pi).sqrt()
    return torch.hypot(y - cy, x - cx) < 0.55 * radius + 1


def test_shapes_mask_is_the_drawn_object():
    shapes = data.shapes(60, size=64, seed=1)
    for image, mask, label in zip(shapes.images.float() / 255, shapes.masks, shapes.targets):
        assert 0.02 < mask.float().mean() < 0.7
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        assert rows.min() > 0 and rows.max() < 63 and cols.min() > 0 and cols.max() < 63  # whole object
        # a mask is one region without holes: a ring's hole is part of the ring
        assert torch.equal(torch.from_numpy(ndimage.binary_fill_holes(mask.numpy())), mask)
        hole = ring_hole(mask) if shapes.classes[label] == "ring" else torch.zeros_like(mask)
        inside = image[:, mask & ~hole]  # one colour plus pixel noise
        assert (inside - inside.median(1, keepdim=True).values).abs().mean() < 0.05
        # ...that differs from the pixels bordering the object, and from a ring's hole
        border = torch.from_numpy(ndimage.binary_dilation(mask.numpy(), iterations=2)) & ~mask
        assert (image[:, border].mean(1) - inside.mean(1)).norm() > 0.15
        if hole.any():
            assert (image[:, hole].mean(1) - inside.mean(1)).norm() > 0.15


def test_shapes_scale_and_distractors_are_parameters():
    small = data.shapes(30, size=48, scale=(0.15, 0.2), distractors=(0, 0))
    large = data.shapes(30, size=48, scale=(0.4, 0.45), distractors=(0, 0))
    assert small.masks.float().mean() < large.masks.float().mean() / 3
    with pytest.raises(ValueError, match="scale"):
        data.shapes(4, scale=(0.3, 0.6))
    with pytest.raises(ValueError, match="distractors"):
        data.shapes(4, distractors=(3, 1))


def test_shapes_rejects_bad_split():
    with pytest.raises(ValueError, match="split='val'"):
        data.shapes(4, split="val")


def test_digits_split_sizes_disjoint_and_stratified():
    train, test = data.digits("train"), data.digits("test")
    assert (len(train), len(test)) == (1257, 540)
    assert train.images.shape[1:] == (3, 32, 32) and train.classes == [str(d) for d in range(10)]
    assert train.masks is None
    assert not {bytes(x.numpy()) for x in train.images} & {bytes(x.numpy()) for x in test.images}
    assert torch.bincount(test.targets).min() >= 50
    assert torch.equal(data.digits("test").images, test.images)
    image, label = test[0]
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1 and image.max() > 0.9


def test_image_folder_reads_class_folders(tmp_path):
    for name, colour in [("cat", (255, 0, 0)), ("dog", (0, 0, 255))]:
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((30, 40, 3), colour, np.uint8)).save(tmp_path / name / f"{i}.png")
    folder = data.image_folder(tmp_path, size=16)
    assert folder.classes == ["cat", "dog"] and len(folder) == 4 and folder.masks is None
    image, label = folder[3]
    assert image.shape == (3, 16, 16) and label == 1
    assert torch.allclose(image[:, 8, 8], torch.tensor([0.0, 0.0, 1.0]))
    normalised, _ = data.image_folder(tmp_path, size=16, normalize=True)[3]
    mean, std = torch.tensor(data.IMAGENET_MEAN), torch.tensor(data.IMAGENET_STD)
    blue = (torch.tensor([0.0, 0.0, 1.0]) - mean) / std
    assert torch.allclose(normalised[:, 8, 8], blue)


def test_image_folder_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        data.image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders"):
        data.image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="needs at least one image"):
        data.image_folder(tmp_path)


def test_builtin_names_the_zoo_splits():
    assert len(data.builtin("digits", "test")) == 540
    with pytest.raises(ValueError, match="No built-in dataset 'cifar'"):
        data.builtin("cifar")


def test_a_built_in_split_is_generated_once_and_each_call_gets_its_own_copy():
    first = data.builtin("digits", "test")
    first.images.zero_()  # a user normalising in place
    hits = data._generated.cache_info().hits
    second = data.builtin("digits", "test")
    assert data._generated.cache_info().hits == hits + 1  # not generated again
    assert second.images.abs().sum() > 0
    assert torch.equal(second.images, data.digits("test").images)
