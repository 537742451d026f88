from pathlib import Path

import pytest
import torch
from torch import nn

from pescore_nb import data, zoo

TINY_VGG = (4, "M", 8)


def test_training_with_the_same_seed_gives_identical_weights():
    train_data = data.shapes(48, size=16)

    def trained(seed):
        model = zoo.VGG(6, config=TINY_VGG)
        return zoo.train(model, train_data, epochs=1, batch_size=16, augment=True, seed=seed).state_dict()

    first, second, other = trained(0), trained(0), trained(1)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_training_restores_torch_global_state():
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    model = zoo.train(zoo.VGG(6, config=TINY_VGG), data.shapes(16, size=16), epochs=1, batch_size=8)
    assert not model.training
    assert (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()) == (deterministic, threads)


class AlwaysClassZero(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images):
        return torch.stack([self.scale * torch.ones(len(images)), torch.zeros(len(images))], 1)


def test_accuracy_counts_correct_predictions_and_restores_mode():
    images = torch.zeros(5, 3, 16, 16, dtype=torch.uint8)
    dataset = data.ImageTensorDataset(images, torch.tensor([0, 1, 0, 1, 1]), ["a", "b"])
    model = AlwaysClassZero().train()
    assert zoo.accuracy(model, dataset, batch_size=2) == pytest.approx(2 / 5)
    assert model.training
    assert zoo.accuracy(model.eval(), dataset) == pytest.approx(2 / 5) and not model.training


@pytest.mark.parametrize("architecture", [zoo.VGG, zoo.ResNet])
def test_cam_layers_exist_and_keep_their_outputs(architecture):
    model = architecture(num_classes=6).eval()
    modules = dict(model.named_modules())
    outputs = {}
    assert len(model.cam_layers) == (1 if architecture is zoo.VGG else 2)
    for name in model.cam_layers:
        def keep(module, inputs, output, name=name):
            outputs[name] = output, output.clone()
        modules[name].register_forward_hook(keep)
    logits = model(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 6)
    for name, (output, copy) in outputs.items():
        assert output.ndim == 4 and output.shape[-1] >= 4
        assert torch.equal(output, copy), f"{name}'s output was changed in place after the hook"
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_vgg_names_its_modules_like_torchvision():
    model = zoo.VGG(6)
    names = dict(model.named_modules())
    assert isinstance(names["features.0"], nn.Conv2d) and isinstance(names["classifier"], nn.Sequential)
    assert model.cam_layers == ("features.16",)
    assert all(isinstance(names[layer], nn.ReLU) for layer in model.cam_layers)
    assert zoo.ResNet(6).cam_layers == ("layer2", "layer3")


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PESCORE_CACHE", str(tmp_path))
    assert zoo.default_cache_dir() == tmp_path
    monkeypatch.delenv("PESCORE_CACHE")
    assert zoo.default_cache_dir() == Path.home() / ".cache" / "pescore_nb"


def test_load_rejects_unknown_names():
    with pytest.raises(ValueError, match="No architecture 'swin'"):
        zoo.load("swin")
    with pytest.raises(ValueError, match="no models for dataset 'cifar'"):
        zoo.load("vgg", "cifar")


@pytest.fixture(scope="module")
def cached_vgg() -> Path:
    """The default VGG trained on shapes, in the user's cache (trained here if missing; the CLI tests
    and the notebooks load the same file)."""
    zoo.load("vgg", "shapes", progress=False)
    return zoo.cached_path("vgg", "shapes")


@pytest.mark.slow
def test_default_vgg_reaches_95_percent_on_shapes(cached_vgg):
    model = zoo.load("vgg", "shapes", cache_dir=cached_vgg.parent)
    assert not model.training
    assert zoo.accuracy(model, data.builtin("shapes", "test")) >= 0.95


@pytest.mark.slow
def test_second_load_reads_the_cache_without_training(cached_vgg, monkeypatch):
    path, cache = cached_vgg, cached_vgg.parent
    modified = path.stat().st_mtime_ns
    monkeypatch.setattr(zoo, "train", lambda *a, **k: pytest.fail("load trained a cached model"))
    first, second = zoo.load("vgg", "shapes", cache_dir=cache), zoo.load("vgg", "shapes", cache_dir=cache)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert path.stat().st_mtime_ns == modified


@pytest.mark.slow
def test_cache_is_loaded_with_weights_only(cached_vgg, tmp_path):
    path = cached_vgg
    torch.save({"features.0.weight": Path("not a tensor")}, tmp_path / path.name)  # needs full unpickling
    with pytest.raises(RuntimeError, match="weights_only=True"):
        zoo.load("vgg", "shapes", cache_dir=tmp_path)


def test_seed_is_part_of_the_cache_key(tmp_path):
    reference = zoo.cached_path("vgg", "digits", cache_dir=tmp_path)
    assert zoo.cached_path("vgg", "digits", seed=0, cache_dir=tmp_path) == reference
    assert zoo.cached_path("vgg", "digits", seed=1, cache_dir=tmp_path) != reference
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        zoo.load("vgg", "digits", seed=-1, cache_dir=tmp_path)


@pytest.mark.slow
def test_twin_is_another_model_as_accurate(cached_vgg):
    reference = zoo.load("vgg", "shapes", cache_dir=cached_vgg.parent)
    twin = zoo.load("vgg", "shapes", seed=1, cache_dir=cached_vgg.parent, progress=False)
    assert zoo.cached_path("vgg", "shapes", seed=1, cache_dir=cached_vgg.parent).exists()
    assert not torch.equal(reference.features[0].weight, twin.features[0].weight)
    assert zoo.accuracy(twin, data.builtin("shapes", "test")) >= 0.95


def test_load_without_training_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_if_missing=True"):
        zoo.load("resnet", "digits", cache_dir=tmp_path, train_if_missing=False)
