"""Tests for pescore_nb.prune: tiny hand-written CNNs, and torchvision models with weights=None."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pescore_nb.prune import METHODS, Finetune, sweep
from pescore_nb.schema import PRUNING_ATTRIBUTE


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
    assert pruned["l2@0.00"].pescore_pruning == {"pruner": "l2", "ratio": 0.0, "params": dense_params, "macs": dense_macs}
    assert pruned["l2@0.50"].pescore_pruning == {"pruner": "l2", "ratio": 0.5, "params": half_params, "macs": half_macs}
    assert n_params(pruned["l2@0.50"]) == half_params
    assert PRUNING_ATTRIBUTE == "pescore_pruning"


@pytest.mark.parametrize("method, kept", [("l2", [0, 2]), ("l1", [1, 2])])
def test_filter_norm_keeps_the_largest_filters(method, kept):
    model = tiny_net(widths=(4, 2))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0, 0, 0] = 3.0  # L2 norm 3, L1 norm 3
        model[0].weight[1, :, :, :2] = 0.25  # 18 weights: L2 norm ~1.06, L1 norm 4.5
        model[0].weight[2, 0, 0, :] = 2.0  # L2 norm ~3.46, L1 norm 6
        model[0].weight[3, 0, 0, 0] = 0.5  # the smallest either way
    pruned = sweep(model, torch.randn(1, 3, 8, 8), [0.5], method=method)[f"{method}@0.50"]
    assert torch.equal(pruned[0].weight, model[0].weight[kept])


def test_resnet18_sweep_really_removes_channels():
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    pruned = sweep(model, x, [0.0, 0.3, 0.6], method="l2")
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
    pruned = sweep(model, x, [0.5], method="random")["random@0.50"]
    assert conv_names(pruned) == conv_names(model)
    assert pruned.classifier[6].out_features == 5 and pruned(x).shape == (1, 5)
    assert pruned.features[0].out_channels == 32
    assert pruned.pescore_pruning["params"] == n_params(pruned) < n_params(model) / 3


@pytest.mark.parametrize("method", METHODS)
def test_input_model_is_never_modified(method):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    model(torch.randn(2, 3, 6, 6))  # materialise the lazy layer
    model[0].requires_grad_(False)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(TensorDataset(torch.randn(8, 3, 6, 6), torch.randint(0, 4, (8,))), batch_size=4)
    pruned = sweep(model, torch.randn(2, 3, 6, 6), [0.5], method=method, finetune=Finetune(loader))
    assert model.training and model[1].training
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True, True, True]
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    candidate = pruned[f"{method}@0.50"]
    assert not candidate.training
    assert [p.requires_grad for p in candidate.parameters()] == [False, False, True, True, True, True]
    if method != "unstructured":
        assert candidate[0].out_channels == 4  # a frozen layer is pruned too


def test_ratio_zero_is_an_equal_copy():
    model = tiny_net()
    copy = sweep(model, torch.randn(1, 3, 8, 8), [0], method="random")["random@0.00"]
    assert copy is not model
    assert_same_state(copy, model)


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
    first, again, other = (sweep(model, x, [0.5], method="random", seed=s)["random@0.50"] for s in (0, 0, 1))
    assert_same_state(first, again)
    assert not torch.equal(first[0].weight, other[0].weight)


def test_unstructured_reaches_the_requested_sparsity():
    model, x = tiny_net(widths=(8, 6), bias=True), torch.randn(1, 3, 8, 8)
    pruned = sweep(model, x, [0.6], method="unstructured")["unstructured@0.60"]
    pruned_weights = torch.cat([pruned[0].weight.flatten(), pruned[2].weight.flatten()])
    zeros = int((pruned_weights == 0).sum())
    assert zeros == round(0.6 * pruned_weights.numel())
    assert torch.equal(pruned[6].weight, model[6].weight)  # the output layer is not masked
    assert pruned.state_dict().keys() == model.state_dict().keys()  # masks made permanent
    dense = pruned.pescore_pruning
    assert dense["params"] == n_params(model) - zeros
    assert dense["macs"] == sweep(model, x, [0.0], method="unstructured")["unstructured@0.00"].pescore_pruning["macs"]


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
    loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)
    model, tune = tiny_net(num_classes=2), Finetune(loader, epochs=20, lr=1e-2)
    raw = sweep(model, images[:1], [0.5])["l2@0.50"]
    tuned, again = (sweep(model, images[:1], [0.5], finetune=tune)["l2@0.50"] for _ in range(2))
    with torch.no_grad():
        raw_loss, tuned_loss = (nn.functional.cross_entropy(m(images), labels) for m in (raw, tuned))
    assert tuned_loss < 0.8 * raw_loss
    assert not tuned.training
    assert_same_state(tuned, again)


X = torch.randn(1, 3, 8, 8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="taylor"), "Unknown pruning method 'taylor'; choose one of 'l1', 'l2', 'random', 'unstructured'"),
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
        (dict(lr=0.0), "Finetune lr must be a positive learning rate such as 1e-3, got 0.0"),
    ],
)
def test_finetune_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Finetune(loader=[], **kwargs)
