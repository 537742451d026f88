"""Tests for pescore_nb.prune and pescore_nb.senpis: tiny hand-written CNNs, and torchvision models
with weights=None."""

import copy
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_pruning as tp
import torchvision
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pescore_nb.prune import PRUNERS, Finetune, sweep
from pescore_nb.schema import PRUNING_ATTRIBUTE
from pescore_nb.senpis import SenpisImportance, class_balanced_sample


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads; on a shared machine, threads only wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_net(num_classes=3, widths=(8, 6), bias=False):
    """conv(3->w0) relu conv(w0->w1) relu avgpool flatten linear(w1->num_classes)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, widths[0], 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.Conv2d(widths[0], widths[1], 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(widths[1], num_classes, bias=bias),
    )


def conv_names(model):
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_tiny_net_counts_match_a_hand_count():
    x = torch.randn(1, 3, 8, 8)
    pruned = sweep(tiny_net(), x, [0.0, 0.5])
    # ratio 0.5: conv0 8 -> 4 filters, conv1 6 -> 3 filters, the output layer keeps its 3 classes.
    dense_params = 8 * 3 * 9 + 6 * 8 * 9 + 3 * 6
    half_params = 4 * 3 * 9 + 3 * 4 * 9 + 3 * 3
    # MACs: conv = k*k*c_in*c_out*H*W; relu, avgpool: one per input element; linear: in*out.
    dense_macs = 9 * 3 * 8 * 64 + 8 * 64 + 9 * 8 * 6 * 64 + 6 * 64 + 6 * 64 + 6 * 3
    half_macs = 9 * 3 * 4 * 64 + 4 * 64 + 9 * 4 * 3 * 64 + 3 * 64 + 3 * 64 + 3 * 3
    provenance = {"pruning_seed": 0, "finetune": None, "pruning_data_digest": None, "finetune_data_digest": None}
    assert pruned["l2@0.00"].pescore_pruning == {"pruner": "l2", "ratio": 0.0, "role": "candidate", "seed": 0,
                                                 "params": dense_params, "macs": dense_macs, "provenance": provenance}
    assert pruned["l2@0.50"].pescore_pruning == {"pruner": "l2", "ratio": 0.5, "role": "candidate", "seed": 0,
                                                 "params": half_params, "macs": half_macs, "provenance": provenance}
    assert n_params(pruned["l2@0.50"]) == half_params
    assert PRUNING_ATTRIBUTE == "pescore_pruning"


@pytest.mark.parametrize("pruner, kept", [("l2", [0, 2]), ("l1", [1, 2])])
def test_filter_norm_keeps_the_largest_filters(pruner, kept):
    model = tiny_net(widths=(4, 2))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0, 0, 0] = 3.0  # L2 norm 3, L1 norm 3
        model[0].weight[1, :, :, :2] = 0.25  # 18 weights: L2 norm ~1.06, L1 norm 4.5
        model[0].weight[2, 0, 0, :] = 2.0  # L2 norm ~3.46, L1 norm 6
        model[0].weight[3, 0, 0, 0] = 0.5  # the smallest either way
    pruned = sweep(model, torch.randn(1, 3, 8, 8), [0.5], pruner=pruner)[f"{pruner}@0.50"]
    assert torch.equal(pruned[0].weight, model[0].weight[kept])


def test_resnet18_sweep_really_removes_channels():
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    pruned = sweep(model, x, [0.0, 0.3, 0.6], pruner="l2")
    assert list(pruned) == ["l2@0.00", "l2@0.30", "l2@0.60"]
    infos = [m.pescore_pruning for m in pruned.values()]
    assert [i["params"] for i in infos] == [n_params(m) for m in pruned.values()]
    assert infos[0]["params"] == n_params(model) > infos[1]["params"] > infos[2]["params"]
    assert infos[0]["macs"] > infos[1]["macs"] > infos[2]["macs"]
    for candidate in pruned.values():
        assert not candidate.training
        assert candidate(x).shape == (2, 10)
        assert conv_names(candidate) == conv_names(model)
        assert candidate.fc.out_features == 10
    assert pruned["l2@0.30"].layer1[0].conv1.out_channels == int(64 * 0.7)


def test_vgg11_bn_keeps_names_and_classes():
    model = torchvision.models.vgg11_bn(weights=None, num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    pruned = sweep(model, x, [0.5], pruner="random")["random@0.50"]
    assert conv_names(pruned) == conv_names(model)
    assert pruned.classifier[6].out_features == 5 and pruned(x).shape == (1, 5)
    assert pruned.features[0].out_channels == 32
    assert pruned.pescore_pruning["params"] == n_params(pruned) < n_params(model) / 3


@pytest.mark.parametrize("pruner", PRUNERS)
def test_input_model_is_never_modified(pruner, snapshot):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    model(torch.randn(2, 3, 6, 6))  # materialise the lazy layer
    model[0].requires_grad_(False)
    model.train()
    before = snapshot(model)
    data = TensorDataset(torch.randn(8, 3, 6, 6), torch.arange(8) % 4)
    tune = Finetune(data, batch_size=4)
    pruned = sweep(model, torch.randn(2, 3, 6, 6), [0.5], pruner=pruner, finetune=tune, data=data, samples_per_class=2)
    before.assert_unchanged()
    for candidate in pruned.values():
        assert not candidate.training
        assert [p.requires_grad for p in candidate.parameters()] == [False, False, True, True, True, True]
        assert all(p.grad is None for p in candidate.parameters())
    if pruner != "unstructured":
        assert pruned[f"{pruner}@0.50"][0].out_channels == 4  # a frozen layer is pruned too


def test_ratio_zero_is_an_equal_copy():
    model = tiny_net()
    copied = sweep(model, torch.randn(1, 3, 8, 8), [0], pruner="random")["random@0.00"]
    assert copied is not model
    assert_same_state(copied, model)


def test_more_pruning_never_means_more_params():
    model = tiny_net(widths=(4, 16))
    pruned = sweep(model, torch.randn(1, 3, 8, 8), np.array([0.2, 0.5, 0.8, 0.95]))
    params = [m.pescore_pruning["params"] for m in pruned.values()]
    assert params == sorted(params, reverse=True) and len(set(params)) == len(params)
    # int(4 * 0.2) == 0 channels would be left: the layer keeps one instead of being skipped.
    assert pruned["l2@0.80"][0].out_channels == pruned["l2@0.95"][0].out_channels == 1
    assert pruned["l2@0.95"][2].out_channels == 1


def test_random_is_seeded():
    model, x = tiny_net(widths=(16, 16)), torch.randn(1, 3, 8, 8)
    first, again, other = (sweep(model, x, [0.5], pruner="random", seed=s)["random@0.50"] for s in (0, 0, 1))
    assert_same_state(first, again)
    assert not torch.equal(first[0].weight, other[0].weight)


def test_unstructured_reaches_the_requested_sparsity():
    model, x = tiny_net(widths=(8, 6), bias=True), torch.randn(1, 3, 8, 8)
    pruned = sweep(model, x, [0.6], pruner="unstructured")["unstructured@0.60"]
    pruned_weights = torch.cat([pruned[0].weight.flatten(), pruned[2].weight.flatten()])
    zeros = int((pruned_weights == 0).sum())
    assert zeros == round(0.6 * pruned_weights.numel())
    assert torch.equal(pruned[6].weight, model[6].weight)  # the output layer is not masked
    assert pruned.state_dict().keys() == model.state_dict().keys()  # masks made permanent
    dense = pruned.pescore_pruning
    assert dense["params"] == n_params(model) - zeros
    assert dense["macs"] == sweep(model, x, [0.0], pruner="unstructured")["unstructured@0.00"].pescore_pruning["macs"]


def test_output_layer_is_found_or_given():
    all_conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(1, 3, 8, 8)
    assert sweep(all_conv, x, [0.5])["l2@0.50"](x).shape == (1, 5)
    model = tiny_net()
    by_name = sweep(model, x, [0.5], ignored_layers=["6", "2"])["l2@0.50"]
    by_module = sweep(model, x, [0.5], ignored_layers=[model[6], model[2]])["l2@0.50"]
    assert by_name[2].out_channels == by_module[2].out_channels == 6
    assert by_name[0].out_channels == 4


def learnable_task():
    """64 images (3, 8, 8) whose class is whether channel 0 is brighter than channel 1."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 8, 8, generator=generator)
    labels = (images[:, 0].mean((1, 2)) > images[:, 1].mean((1, 2))).long()
    return images, labels


def test_finetune_lowers_the_training_loss_deterministically():
    images, labels = learnable_task()
    model, tune = tiny_net(num_classes=2), Finetune(TensorDataset(images, labels), epochs=20, lr=1e-2, batch_size=16)
    raw = sweep(model, images[:1], [0.5])["l2@0.50"]
    tuned, again = (sweep(model, images[:1], [0.5], finetune=tune, controls=False)["l2@0.50"] for _ in range(2))
    with torch.no_grad():
        raw_loss, tuned_loss = (nn.functional.cross_entropy(m(images), labels) for m in (raw, tuned))
    assert tuned_loss < 0.8 * raw_loss
    assert not tuned.training
    assert_same_state(tuned, again)


def test_distilling_takes_one_adam_step_on_the_references_softened_outputs():
    """One batch, one step, against a float64 recomputation of T**2 * KL(teacher || student) and Adam."""
    images, labels = learnable_task()
    model = tiny_net(num_classes=2)
    tune = Finetune(TensorDataset(images, labels), epochs=1, lr=1e-3, batch_size=len(images), distill=True,
                    temperature=3.0)
    distilled = sweep(model, images[:1], [0.5], finetune=tune, controls=False)["l2@0.50"]
    plain = sweep(model, images[:1], [0.5], finetune=Finetune(tune.data, epochs=1, lr=1e-3, batch_size=len(images)),
                  controls=False)["l2@0.50"]

    student = sweep(model, images[:1], [0.5])["l2@0.50"].double()  # the same pruned copy, not fine-tuned
    with torch.no_grad():
        target = torch.softmax(copy.deepcopy(model).double()(images.double()) / 3.0, dim=1)
    log_student = torch.log_softmax(student(images.double()) / 3.0, dim=1)
    loss = 9.0 * (target * (target.log() - log_student)).sum(1).mean()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    loss.backward()
    optimizer.step()
    for (name, expected), got in zip(student.state_dict().items(), distilled.state_dict().values()):
        torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=0, msg=name)
    assert distilled.pescore_pruning["provenance"]["finetune"]["distill"] is True
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), distilled.state_dict().values()))
    assert all(p.grad is None for p in model.parameters())  # the reference is untouched


X = torch.randn(1, 3, 8, 8)
DATA = TensorDataset(torch.randn(9, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(9) % 3)
GROUPED = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.LazyLinear(3))


class SequenceFirstAttention(nn.Module):
    """Tokens of a convolution through an ``nn.MultiheadAttention`` with ``batch_first=False``."""

    def __init__(self):
        super().__init__()
        self.conv, self.attention, self.head = nn.Conv2d(3, 4, 3), nn.MultiheadAttention(4, 2), nn.Linear(4, 3)

    def forward(self, images):
        tokens = self.conv(images).flatten(2).permute(2, 0, 1)  # (tokens, N, 4)
        return self.head(self.attention(tokens, tokens, tokens)[0].mean(0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pruner="taylor2"),
         "Unknown pruner 'taylor2'; choose one of 'l1', 'l2', 'random', 'taylor', 'senpis', 'unstructured'"),
        (dict(pruner=["l2", "l3"]), "Unknown pruner 'l3'"),
        (dict(pruner=[]), "pruner must be a pruner name or a non-empty list of them such as ['l2', 'senpis'], got []"),
        (dict(pruner=["l2", "random", "l2"]),
         "pruner 'l2' is listed twice in ['l2', 'random', 'l2']; list each pruner once"),
        (dict(pruner="senpis"),
         "pruner 'senpis' ranks channels on labelled images: pass data=<a Dataset of (image, label"),
        (dict(pruner=["l2", "taylor"]), "pruner 'taylor' ranks channels on labelled images: pass data="),
        (dict(pruner="senpis", data=DATA, samples_per_class=4),
         "Class 0 has 3 images in data, fewer than samples_per_class=4; pass a smaller samples_per_class"),
        (dict(pruner="taylor", data=DATA, samples_per_class=0), "samples_per_class must be an integer >= 1, got 0"),
        (dict(pruner="senpis", data=TensorDataset(torch.randn(0, 3, 8, 8), torch.zeros(0))), "data is empty"),
        (dict(pruner="senpis", data=DATA, model=GROUPED),
         "pruner 'senpis' cannot prune the grouped convolution '2' (groups=2); use pruner='l2' or 'taylor'"),
        (dict(pruner="senpis", data=DATA, model=SequenceFirstAttention()),
         "pruner 'senpis' needs batch-first attentions, and 'attention' has batch_first=False; use pruner='l2'"),
        (dict(ratios=[0.5, 1.0]), "must be a number in [0, 1), got 1.0"),
        (dict(ratios=[-0.1]), "must be a number in [0, 1), got -0.1"),
        (dict(ratios=[]), "ratios must be a non-empty list of fractions such as [0.1, 0.3, 0.5], got []"),
        (dict(ratios=0.5), "ratios must be a non-empty list"),
        (dict(ratios=[0.301, 0.302]), "Two ratios both round to 0.30"),
        (dict(example_input=torch.randn(3, 8, 8)), "example_input must be an image batch tensor (N, C, H, W), got (3, 8, 8)"),
        (dict(example_input=torch.randn(1, 4, 8, 8)), "The model could not run on example_input of shape (1, 4, 8, 8)"),
        (dict(model=nn.Conv2d(3, 4, 3)), "The model must return logits (N, num_classes), got (1, 4, 6, 6)"),
        (dict(model=nn.Sequential(nn.Flatten(), nn.Linear(192, 8), nn.AdaptiveAvgPool1d(4))),
         "Could not find the classifier's output layer: no Conv/Linear layer produces 4 channels"),
        (dict(ignored_layers=["head"]), "ignored_layers entry 'head' is not a module of the model"),
        (dict(seed=-1), "seed must be an integer >= 0, got -1"),
        (dict(seeds=0), "seeds must be a number of seeds >= 1 or a list of seeds such as [0, 1, 2], got 0"),
        (dict(seeds=True), "seeds must be a number of seeds >= 1 or a non-empty list of integer seeds >= 0"),
        (dict(seeds=[]), "seeds must be a number of seeds >= 1 or a non-empty list of integer seeds >= 0 such as "
                         "[0, 1, 2], got []"),
        (dict(seeds=[0, -1]), "a non-empty list of integer seeds >= 0 such as [0, 1, 2], got [0, -1]"),
        (dict(seeds=[0, 1.5]), "a non-empty list of integer seeds >= 0 such as [0, 1, 2], got [0, 1.5]"),
        (dict(seeds=[1, 2, 1]), "seed 1 is listed twice in seeds=[1, 2, 1]; list each seed once"),
        (dict(seed=3, seeds=[0, 1]), "seed=3 and the list seeds=[0, 1] both name seeds; put every seed in the list, "
                                     "or pass seeds=2 to count up from seed=3"),
        (dict(workers=0), "workers must be an integer >= 1, got 0; pass 1 to make the models in this process"),
        (dict(workers=2.0), "workers must be an integer >= 1, got 2.0"),
    ],
)
def test_errors_name_the_problem_and_the_fix(kwargs, message):
    arguments = dict(model=tiny_net(), example_input=X, ratios=[0.5]) | kwargs
    with pytest.raises(ValueError) as error:
        sweep(**arguments)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), "Finetune epochs must be an integer >= 1, got 0"),
        (dict(epochs=1.5), "Finetune epochs must be an integer >= 1, got 1.5"),
        (dict(lr=0.0), "Finetune lr must be a positive, finite learning rate such as 1e-3, got 0.0"),
        (dict(batch_size=0), "Finetune batch_size must be an integer >= 1, got 0"),
        (dict(batch_size=True), "Finetune batch_size must be an integer >= 1, got True"),
        (dict(data=TensorDataset(torch.randn(0, 3, 8, 8), torch.zeros(0))),
         "Finetune data must be a non-empty Dataset of (image, label, ...) items, got"),
        (dict(distill=1), "Finetune distill must be True or False, got 1"),
        (dict(distill=True, temperature=0), "Finetune temperature must be a positive number such as 2.0, got 0"),
        (dict(schedule="step"), "Finetune schedule must be one of 'constant', 'cosine', 'linear', got 'step'"),
        (dict(data=DataLoader(DATA, batch_size=4)),
         "Finetune takes the Dataset, not a DataLoader (each fine-tuning shuffles it with its own seeded generator): "
         "pass Finetune(loader.dataset, batch_size=loader.batch_size)"),
    ],
)
def test_finetune_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        Finetune(**dict(data=DATA) | kwargs)
    assert message in str(error.value)


def test_a_list_of_pruners_gives_every_pruner_at_every_ratio():
    model = tiny_net()
    both = sweep(model, X, [0.25, 0.5], pruner=["l1", "random"])
    assert list(both) == ["l1@0.25", "l1@0.50", "random@0.25", "random@0.50"]
    assert_same_state(both["random@0.50"], sweep(model, X, [0.5], pruner="random")["random@0.50"])
    assert list(sweep(model, X, [0.5], pruner="l1")) == ["l1@0.50"]  # a string is one pruner, not characters
    assert list(sweep(model, X, [0.5], pruner=("l2",))) == ["l2@0.50"]


def test_progress_bar_counts_the_models(capsys):
    sweep(tiny_net(), X, [0.25, 0.5], pruner=["l1", "l2"])
    assert capsys.readouterr().err == ""
    sweep(tiny_net(), X, [0.25, 0.5], pruner=["l1", "l2"], progress=True)
    err = capsys.readouterr().err
    assert "pruning: 100%" in err and "4/4" in err


def dropout_net():
    """tiny_net with dropout before the classifier: fine-tuning draws random numbers."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(6, 2))


def test_fine_tuning_does_not_depend_on_what_was_fine_tuned_before():
    images, labels = learnable_task()
    tune = Finetune(TensorDataset(images, labels), epochs=2, batch_size=16)
    model = dropout_net()
    rng = torch.get_rng_state()
    forward = sweep(model, images[:1], [0.2, 0.5], pruner="random", seed=3, finetune=tune)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's global RNG is untouched
    backward = sweep(model, images[:1], [0.5, 0.2], pruner="random", seed=3, finetune=tune)
    for name in ("random@0.20", "random@0.50", "control:finetune"):
        assert_same_state(forward[name], backward[name])
    other_seed = sweep(model, images[:1], [0.2], pruner="random", seed=4, finetune=tune, controls=False)
    assert not torch.equal(other_seed["random@0.20"][7].weight, forward["random@0.20"][7].weight)


def test_the_fine_tuning_control_is_the_unpruned_model_fine_tuned_alike():
    images, labels = learnable_task()
    model, tune = tiny_net(num_classes=2), Finetune(TensorDataset(images, labels), batch_size=16)
    tuned = sweep(model, images[:1], [0.0, 0.5], pruner=["l2", "random"], finetune=tune)
    assert list(tuned) == ["l2@0.00", "l2@0.50", "random@0.00", "random@0.50", "control:finetune"]
    control = tuned["control:finetune"]
    assert_same_state(control, tuned["l2@0.00"])  # same recipe, same seed, no pruning
    assert not torch.equal(control[0].weight, model[0].weight)
    info = control.pescore_pruning
    assert (info["pruner"], info["ratio"], info["role"], info["params"]) == ("none", 0.0, "control", n_params(model))
    assert tuned["l2@0.50"].pescore_pruning["role"] == "candidate"
    assert "control:finetune" not in sweep(model, images[:1], [0.5], finetune=tune, controls=False)
    assert "control:finetune" not in sweep(model, images[:1], [0.5])


def digest(images, labels):
    return hashlib.sha256(images.numpy().tobytes() + labels.long().numpy().tobytes()).hexdigest()[:16]


def test_provenance_records_the_seed_the_recipe_and_the_data():
    images, labels = learnable_task()
    tune = Finetune(TensorDataset(images, labels), epochs=1, lr=2e-3, batch_size=16)
    data = TensorDataset(images, labels)
    made = sweep(tiny_net(num_classes=2), images[:1], [0.25, 0.5], pruner=["l2", "taylor", "senpis"], seed=7,
                 finetune=tune, data=data, samples_per_class=3)
    recipe = {"epochs": 1, "lr": 2e-3, "batch_size": 16, "seed": 7, "images": 64, "schedule": "cosine"}
    tuned_on = digest(images, labels)
    sampled = digest(*class_balanced_sample(data, 3, seed=7))
    for name, model in made.items():
        provenance = model.pescore_pruning["provenance"]
        uses_sample = name.startswith(("taylor", "senpis"))
        assert provenance == {"pruning_seed": 7, "finetune": recipe, "finetune_data_digest": tuned_on,
                              "pruning_data_digest": sampled if uses_sample else None}
        json.dumps(model.pescore_pruning)
    rebatched = Finetune(TensorDataset(images, labels), batch_size=5)
    again = sweep(tiny_net(num_classes=2), images[:1], [0.5], pruner="taylor", seed=8, finetune=rebatched, data=data,
                  samples_per_class=3, controls=False)["taylor@0.50"].pescore_pruning["provenance"]
    assert again["finetune_data_digest"] == tuned_on  # the digest does not depend on batching
    assert again["pruning_data_digest"] != sampled  # another seed draws another sample


def test_class_balanced_sample_is_seeded_and_balanced():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1, 2, 0])
    data = TensorDataset(torch.arange(10.0)[:, None, None, None].expand(10, 1, 2, 2), labels)
    images, sampled = class_balanced_sample(data, 2, seed=0)
    assert sampled.tolist() == [0, 0, 1, 1, 2, 2] and images.shape == (6, 1, 2, 2)
    assert all(labels[int(i)] == label for i, label in zip(images[:, 0, 0, 0], sampled))  # each image with its label
    again, _ = class_balanced_sample(data, 2, seed=0)
    assert torch.equal(images, again)
    assert any(not torch.equal(images, class_balanced_sample(data, 2, seed=s)[0]) for s in range(1, 5))


def randomise_batch_norms(model):
    """Give every batch norm a random scale, shift and running statistics, so that its shift matters."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                for tensor in (module.weight, module.bias, module.running_mean):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator))
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


def plain_cnn():
    """conv-bn-relu (3->8, with bias), conv-bn-relu (8->8), pool, linear (8->6), relu, linear (6->3)."""
    torch.manual_seed(0)
    return randomise_batch_norms(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3),
    ))


PLAIN_GROUPS = [["0"], ["3"], ["8"]]  # the tied layers of each torch-pruning group, in forward order


class TinyResNet(nn.Module):
    """A stem (3->8), a residual block (8->8), a downsampling block with a 1x1 shortcut (8->12), a classifier."""

    def __init__(self, num_classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = torchvision.models.resnet.BasicBlock(8, 8)
        shortcut = nn.Sequential(nn.Conv2d(8, 12, 1, stride=2, bias=False), nn.BatchNorm2d(12))
        self.block2 = torchvision.models.resnet.BasicBlock(8, 12, stride=2, downsample=shortcut)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, num_classes))
        randomise_batch_norms(self)

    def forward(self, images):
        return self.head(self.block2(self.block1(self.stem(images))))


# In forward order; the residual additions tie stem.0 to block1.conv2, and block2.conv2 to the shortcut.
RESNET_GROUPS = [["stem.0", "block1.conv2"], ["block1.conv1"], ["block2.conv1"],
                 ["block2.conv2", "block2.downsample.0"]]


def senpis_one_filter_at_a_time(model, images, labels, ratio, groups):
    """SeNPIS-Faster the slow, literal way: for each group in turn, zero the weights and bias of one
    (tied) filter at a time, score |class loss change| averaged over classes, prune the lowest."""
    model = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=images[:1])
    classes = labels.unique()

    @torch.no_grad()
    def class_losses():
        losses = F.cross_entropy(model(images), labels, reduction="none")
        return torch.stack([losses[labels == k].mean() for k in classes])

    for names in groups:
        layers = [model.get_submodule(name) for name in names]
        channels = layers[0].weight.shape[0]
        original, scores = class_losses(), []
        for c in range(channels):
            saved = copy.deepcopy(model.state_dict())
            with torch.no_grad():
                for layer in layers:
                    layer.weight[c] = 0
                    if layer.bias is not None:
                        layer.bias[c] = 0
            scores.append(float((class_losses() - original).abs().mean()))
            model.load_state_dict(saved)
        n_removed = channels - max(1, int(channels * (1 - ratio)))
        removed = sorted(range(channels), key=lambda c: (scores[c], c))[:n_removed]
        prune_fn = tp.prune_linear_out_channels if isinstance(layers[0], nn.Linear) else tp.prune_conv_out_channels
        graph.get_pruning_group(layers[0], prune_fn, removed).prune()
    return model


@pytest.mark.parametrize("make, groups", [(plain_cnn, PLAIN_GROUPS), (TinyResNet, RESNET_GROUPS)])
@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_senpis_removes_the_filters_a_one_at_a_time_loop_removes(make, groups, ratio):
    model = make().double()
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(12, 3, 8, 8, generator=generator, dtype=torch.float64), torch.arange(12) % 3)
    images, labels = class_balanced_sample(data, 3, seed=5)
    by_hand = senpis_one_filter_at_a_time(model, images, labels, ratio, groups)
    pruned = sweep(model, images[:1], [ratio], pruner="senpis", data=data, samples_per_class=3, seed=5)
    by_sweep = pruned[f"senpis@{ratio:.2f}"]
    assert_same_state(by_sweep, by_hand)  # the same filters went
    assert n_params(by_sweep) < n_params(model)
    assert conv_names(by_sweep) == conv_names(model)


def test_senpis_importance_does_not_depend_on_how_ablations_are_batched():
    model = TinyResNet().double()
    data = TensorDataset(torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.arange(6) % 3)
    images, labels = class_balanced_sample(data, 2, seed=0)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=images[:1])
    group = graph.get_pruning_group(model.stem[0], tp.prune_conv_out_channels, list(range(8)))
    all_at_once = SenpisImportance(model, images, labels)(group)
    assert all_at_once.shape == (8,) and all_at_once.max() > 0
    for images_per_forward in (6, 24):  # 1 and 3 ablations per forward pass
        torch.testing.assert_close(SenpisImportance(model, images, labels, images_per_forward)(group), all_at_once)


@pytest.mark.parametrize("make, layer, splits", [(plain_cnn, "3", True), (TinyResNet, "block2.conv1", False)])
def test_senpis_runs_the_network_before_the_group_once_where_it_can(make, layer, splits):
    # The plain CNN's prefix runs once and is repeated at the group; around block2.conv1 the shortcut
    # carries the unrepeated images, so the scores come from the sample repeated at the input instead.
    model = make().double()
    data = TensorDataset(torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.arange(6) % 3)
    images, labels = class_balanced_sample(data, 2, seed=0)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=images[:1])
    root = model.get_submodule(layer)
    group = graph.get_pruning_group(root, tp.prune_conv_out_channels, list(range(root.out_channels)))
    importance, repeated_at_input = SenpisImportance(model, images, labels), SenpisImportance(model, images, labels)
    repeated_at_input.repeat_at_group = False
    scores = importance(group)
    assert importance.repeat_at_group is splits
    assert scores.max() > 0
    torch.testing.assert_close(scores, repeated_at_input(group))


def test_senpis_breaks_ties_by_filter_index():
    model = tiny_net(widths=(4, 2))
    with torch.no_grad():
        model[0].weight[1:] = 0  # filters 1, 2, 3 change nothing: importance exactly 0
    pruned = sweep(model, X, [0.5], pruner="senpis", data=DATA, samples_per_class=3)["senpis@0.50"]
    assert torch.equal(pruned[0].weight, model[0].weight[[0, 3]])


def test_taylor_removes_the_filters_that_do_not_reach_the_loss():
    model = tiny_net(widths=(4, 2))
    with torch.no_grad():
        model[0].weight[3] = 0  # filter 3 outputs nothing
        model[2].weight[:, 1] = 0  # filter 1's output is never read
    pruned = sweep(model, X, [0.5], pruner="taylor", data=DATA, samples_per_class=3)["taylor@0.50"]
    assert torch.equal(pruned[0].weight, model[0].weight[[0, 2]])


def widths(model):
    """The output channels of every Conv/Linear layer, in module order."""
    return [m.weight.shape[0] for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("make", [plain_cnn, TinyResNet])
@pytest.mark.parametrize("pruner", ["taylor", "senpis"])
def test_every_structured_pruner_removes_as_many_channels(pruner, make):
    model, ratios = make(), [0.3, 0.6, 0.9]
    pruned = sweep(model, X, ratios, pruner=["l2", pruner], data=DATA, samples_per_class=2)
    for ratio in ratios:
        expected = [max(1, int(c * (1 - ratio))) for c in widths(model)[:-1]] + [3]  # the classifier keeps 3
        assert widths(pruned[f"l2@{ratio:.2f}"]) == widths(pruned[f"{pruner}@{ratio:.2f}"]) == expected


class BatchLog(Dataset):
    """``(image, label)`` pairs that write every batch a DataLoader asks for to ``log``, one line per batch:
    ``"<process id> <torch threads> <index> <index> ..."``. With ``meet=n``, a process's first batch waits
    (up to a minute) until ``n`` processes have written to the log. Picklable, so worker processes log too."""

    def __init__(self, images, labels, log: Path, meet: int = 1):
        self.images, self.labels, self.log, self.meet = images, labels, log, meet

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __getitems__(self, indices):  # what a DataLoader calls, once per batch
        with open(self.log, "a") as log:
            log.write(" ".join(map(str, [os.getpid(), torch.get_num_threads(), *indices])) + "\n")
        deadline = time.monotonic() + 60
        while len({pid for pid, _, _ in read_batches(self.log)}) < self.meet and time.monotonic() < deadline:
            time.sleep(0.05)
        return [self[i] for i in indices]


def read_batches(log: Path) -> list[tuple[int, int, list[int]]]:
    """``(process id, torch threads, indices)`` of every batch a :class:`BatchLog` wrote, in order."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [(int(pid), int(threads), [int(i) for i in indices]) for pid, threads, *indices in map(str.split, lines)]


def seeded_sweep(log, seeds, meet=1, **kwargs):
    """Every pruner at ratio 0.5 plus the control, on dropout_net, fine-tuned on 64 images in 4 batches."""
    images, labels = learnable_task()
    tune = Finetune(BatchLog(images, labels, log, meet), batch_size=16)
    return sweep(dropout_net(), images[:1], [0.5], pruner=PRUNERS, seeds=seeds, finetune=tune,
                 data=TensorDataset(images, labels), samples_per_class=3, **kwargs)


def test_every_model_is_made_once_per_seed_with_its_own_batch_order_sample_and_weights(tmp_path):
    made = seeded_sweep(tmp_path / "batches", seeds=[0, 1])
    bases = [f"{pruner}@0.50" for pruner in PRUNERS] + ["control:finetune"]
    assert list(made) == [f"{base}/seed{seed}" for base in bases for seed in (0, 1)]
    # Made one after another in the order returned, each reading the 64 images in 4 batches.
    batches = [indices for _, _, indices in read_batches(tmp_path / "batches")]
    assert len(batches) == 4 * len(made)
    orders = {name: sum(batches[4 * i:4 * i + 4], []) for i, name in enumerate(made)}
    assert all(sorted(order) == list(range(64)) for order in orders.values())
    images, labels = learnable_task()
    for seed in (0, 1):
        assert len({tuple(orders[f"{base}/seed{seed}"]) for base in bases}) == 1  # the order is the seed's
    for base in bases:
        zero, one = made[f"{base}/seed0"], made[f"{base}/seed1"]
        assert orders[f"{base}/seed0"] != orders[f"{base}/seed1"]
        assert not all(torch.equal(a, b) for a, b in zip(zero.state_dict().values(), one.state_dict().values()))
        for seed, model in ((0, zero), (1, one)):
            info = model.pescore_pruning
            assert (info["seed"], info["provenance"]["pruning_seed"], info["provenance"]["finetune"]["seed"]) \
                == (seed, seed, seed)
            expected = digest(*class_balanced_sample(TensorDataset(images, labels), 3, seed=seed))
            uses_sample = base.startswith(("taylor", "senpis"))
            assert info["provenance"]["pruning_data_digest"] == (expected if uses_sample else None)
    for pruner in ("taylor", "senpis"):
        samples = {made[f"{pruner}@0.50/seed{s}"].pescore_pruning["provenance"]["pruning_data_digest"] for s in (0, 1)}
        assert len(samples) == 2
    unpruned = dropout_net()
    raw = sweep(unpruned, images[:1], [0.5], pruner=["random", "l2"], seeds=[0, 1])  # no fine-tuning
    assert not torch.equal(raw["random@0.50/seed0"][0].weight, raw["random@0.50/seed1"][0].weight)
    assert_same_state(raw["l2@0.50/seed0"], raw["l2@0.50/seed1"])  # nothing random in l2 without fine-tuning


def test_one_seed_keeps_the_plain_names_and_a_seed_makes_the_same_model_alone_or_beside_others(tmp_path):
    alone = seeded_sweep(tmp_path / "alone", seeds=[3])
    beside = seeded_sweep(tmp_path / "beside", seeds=[2, 3])
    bases = [f"{pruner}@0.50" for pruner in PRUNERS] + ["control:finetune"]
    assert list(alone) == bases
    for base in bases:
        assert alone[base].pescore_pruning["seed"] == 3
        assert_same_state(alone[base], beside[f"{base}/seed3"])
    counted = sweep(tiny_net(), X, [0.5], seed=3, seeds=2)
    assert list(counted) == ["l2@0.50/seed3", "l2@0.50/seed4"]
    assert list(sweep(tiny_net(), X, [0.5], seed=3, seeds=1)) == ["l2@0.50"]


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_the_learning_rate_schedule_sets_every_steps_rate(schedule, monkeypatch):
    """10 images in batches of 4, for 2 epochs: K = 6 Adam steps; step k uses lr * f(k / K)."""
    rates = []
    adam_step = torch.optim.Adam.step

    def recording_step(optimizer, *args, **kwargs):
        rates.append(optimizer.param_groups[0]["lr"])
        return adam_step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    generator = torch.Generator().manual_seed(0)
    tune = Finetune(TensorDataset(torch.randn(10, 3, 8, 8, generator=generator), torch.arange(10) % 3), epochs=2,
                    lr=0.01, batch_size=4, schedule=schedule)
    made = sweep(tiny_net(), X, [0.5], finetune=tune, controls=False)["l2@0.50"]
    expected = {
        "constant": [0.01] * 6,
        "cosine": [0.01 * 0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(6)],
        "linear": [0.01 * (1 - k / 6) for k in range(6)],
    }[schedule]
    assert rates == pytest.approx(expected, rel=1e-12, abs=0)
    assert made.pescore_pruning["provenance"]["finetune"]["schedule"] == schedule


def test_workers_make_the_same_models_in_separate_processes_with_one_thread_each(tmp_path, capsys):
    torch.set_num_threads(2)  # the fixture restores it
    here = seeded_sweep(tmp_path / "here", seeds=2)
    assert torch.get_num_threads() == 2
    open_files = len(os.listdir("/proc/self/fd"))
    spread = seeded_sweep(tmp_path / "spread", seeds=2, meet=2, workers=2, progress=True)
    assert len(os.listdir("/proc/self/fd")) <= open_files + 2  # no file descriptor held per tensor sent back
    assert list(spread) == list(here)
    for name, model in here.items():
        assert_same_state(spread[name], model)
        assert spread[name].pescore_pruning == model.pescore_pruning
    assert {(pid, threads) for pid, threads, _ in read_batches(tmp_path / "here")} == {(os.getpid(), 1)}
    worker_pids = {pid for pid, _, _ in read_batches(tmp_path / "spread")}
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert {threads for _, threads, _ in read_batches(tmp_path / "spread")} == {1}
    assert f"{len(here)}/{len(here)}" in capsys.readouterr().err


def test_a_script_without_a_main_guard_gets_the_fix_not_a_broken_pool(tmp_path):
    """Spawned workers import the script that calls ``sweep``; without ``if __name__ == "__main__":``
    each one would run the sweep again and die while starting."""
    script = tmp_path / "unguarded.py"
    script.write_text("import torch\nfrom torch import nn\nfrom pescore_nb import prune\n"
                      "model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 3))\n"
                      "prune.sweep(model, torch.randn(1, 3, 8, 8), [0.25, 0.5], workers=2)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    last_line = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1
    assert last_line.startswith("RuntimeError: A worker process of sweep(workers > 1) died.")
    assert 'under `if __name__ == "__main__":`' in last_line and last_line.endswith("or pass workers=1.")


class NotebookNet(nn.Sequential):
    """tiny_net's layers, as a class defined in a notebook: it lives in ``__main__``."""


def test_a_model_worker_processes_cannot_receive_is_refused_with_the_fix(monkeypatch):
    holding_a_lambda = tiny_net()
    holding_a_lambda.preprocess = lambda images: images
    with pytest.raises(ValueError) as error:
        sweep(holding_a_lambda, X, [0.5], workers=2)
    message = str(error.value)
    assert "\n" not in message and message.startswith("workers > 1 makes the models in new processes, which cannot "
                                                      "receive the model or the fine-tuning data (")
    assert message.endswith("or pass workers=1.")

    monkeypatch.setattr(NotebookNet, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "NotebookNet", NotebookNet, raising=False)
    with pytest.raises(ValueError) as error:
        sweep(NotebookNet(*tiny_net()), X, [0.5], workers=2)
    message = str(error.value)
    assert "\n" not in message and message.startswith("workers > 1 makes the models in new processes, which could "
                                                      "not load the model or the fine-tuning data (")
    assert "NotebookNet" in message and message.endswith("or pass workers=1.")
