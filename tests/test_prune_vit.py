"""Pruning torchvision's VisionTransformer: head-consistent widths, every pruner, the token grid kept,
and SwinTransformer refused with the fix."""

import copy

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
import torchvision
from torch import nn

import pescore_nb
from pescore_nb import data, prune, zoo
from pescore_nb.prune.attention import unwrapped_parameters
from pescore_nb.prune.pruning import remove_masks
from pescore_nb.senpis import SenpisImportance, class_balanced_sample, group_filters

STRUCTURED = ("l1", "l2", "random", "taylor", "senpis")
HEADS, HEAD_DIM = 4, 8


@pytest.fixture(scope="module")
def vit():
    """A two-block zoo ViT (4 heads of 8), its head re-drawn so that gradients and maps are not zero."""
    torch.manual_seed(0)
    model = zoo.ViT(6, stem=((8, 2), (16, 2), (32, 2)), num_layers=2, num_heads=HEADS, hidden_dim=HEADS * HEAD_DIM, mlp_dim=64)
    nn.init.normal_(model.heads.head.weight, std=0.5)
    return model.eval()


@pytest.fixture(scope="module")
def shapes_train():
    return data.builtin("shapes", "train")


@pytest.fixture(scope="module")
def swept(vit, shapes_train):
    """Every pruner at ratios 0.25 and 0.6, without fine-tuning."""
    return prune.sweep(vit, torch.rand(2, 3, 64, 64), [0.25, 0.6], pruner=list(prune.PRUNERS),
                       data=shapes_train, samples_per_class=2, controls=False)


def _attentions(model):
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]


@pytest.mark.parametrize("pruner", STRUCTURED)
def test_structured_pruning_keeps_every_head_and_shrinks_head_dim_and_mlp(vit, swept, pruner):
    for ratio, head_dim, mlp_dim in [(0.25, 6, 48), (0.6, 3, 25)]:  # int(8 * (1 - r)), int(64 * (1 - r))
        model = swept[f"{pruner}@{ratio:.2f}"]
        assert model.hidden_dim == HEADS * head_dim == model.class_token.shape[-1]
        assert model.encoder.pos_embedding.shape == (1, 65, HEADS * head_dim)
        for attention in _attentions(model):
            assert (attention.num_heads, attention.head_dim, attention.embed_dim) == (HEADS, head_dim, HEADS * head_dim)
            assert attention.in_proj_weight.shape == (3 * HEADS * head_dim, HEADS * head_dim)
        assert model.mlp_dim == mlp_dim == model.encoder.layers[1].mlp[0].out_features
        assert model.heads.head.out_features == 6
        assert model(torch.rand(3, 3, 64, 64)).shape == (3, 6)
    params = [sum(p.numel() for p in m.parameters()) for m in (vit, swept[f"{pruner}@0.25"], swept[f"{pruner}@0.60"])]
    assert params[0] > params[1] > params[2]
    assert swept[f"{pruner}@0.25"].pescore_pruning["params"] == params[1]


@pytest.mark.parametrize("pruner", ["l2", "senpis"])
def test_the_same_positions_leave_every_head(vit, swept, pruner):
    """Each kept channel of the residual stream is found by its column of the position embedding."""
    before = vit.encoder.pos_embedding[0].T  # (hidden_dim, tokens)
    after = swept[f"{pruner}@0.25"].encoder.pos_embedding[0].T
    kept = torch.tensor([int((before - row).abs().sum(1).argmin()) for row in after])
    assert torch.equal(before[kept], after)
    positions = kept.reshape(HEADS, -1)
    assert (positions % HEAD_DIM == positions[0] % HEAD_DIM).all() and (positions // HEAD_DIM).T.eq(torch.arange(HEADS)).all()


def test_the_token_grid_is_kept_and_the_reference_scores_one(vit, swept):
    test = data.builtin("shapes", "test")
    subset = data.ImageTensorDataset(test.images[:12], test.targets[:12], test.classes)
    candidates = {name: swept[name] for name in ("l2@0.25", "senpis@0.60", "unstructured@0.60")}
    ds = pescore_nb.evaluate(vit, candidates, subset, layers=vit.cam_layers, cams="gradcam++", batch_size=12)
    assert ds.sizes["y"] == 64 and ds.sizes["x"] == 64
    pe = ds["pe"].mean("image")
    assert float(pe.sel(model="reference").min()) == 1.0
    assert bool(pe.notnull().all())
    assert float(pe.sel(model="senpis@0.60").max()) < 1.0


def test_unstructured_masks_hold_through_finetuning_and_leave_no_hook(vit, shapes_train):
    finetune = prune.Finetune(torch.utils.data.Subset(shapes_train, range(64)), epochs=1, batch_size=32)
    model = prune.sweep(vit, torch.rand(2, 3, 64, 64), [0.5], pruner="unstructured", finetune=finetune,
                        controls=False)["unstructured@0.50"]
    for attention in _attentions(model):
        assert not attention._forward_pre_hooks and not hasattr(attention.out_proj, "weight_mask")
        assert float((attention.in_proj_weight == 0).float().mean()) > 0.2
        assert float((attention.out_proj.weight == 0).float().mean()) > 0.2
    zeros = sum(int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, prune.PRUNABLE))
    zeros += sum(int((m.in_proj_weight == 0).sum()) for m in _attentions(model))
    dense = sum(p.numel() for p in vit.parameters())
    assert model.pescore_pruning["params"] == dense - zeros


def test_unstructured_masks_leave_a_plain_model_alone():
    model = nn.Sequential(nn.Linear(4, 4))
    model.register_forward_pre_hook(lambda module, inputs: None)
    remove_masks(model)
    assert len(model._forward_pre_hooks) == 1


def test_pruning_a_swin_transformer_is_refused_with_the_fix():
    swin = torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                              window_size=[4, 4], num_classes=6).eval()
    before = {name: p.clone() for name, p in swin.state_dict().items()}
    with pytest.raises(ValueError, match="SwinTransformer.*evaluate"):
        prune.sweep(swin, torch.rand(1, 3, 64, 64), [0.3])
    assert all(torch.equal(before[name], p) for name, p in swin.state_dict().items())


VIT_GROUPS = ["conv_proj.conv_bn_relu_0.0", "conv_proj.conv_bn_relu_2.0", "conv_proj.conv_last",
              "encoder.layers.encoder_layer_0.mlp.0", "encoder.layers.encoder_layer_1.mlp.0"]


@pytest.mark.parametrize("root", VIT_GROUPS)
def test_senpis_of_every_kind_of_vit_group_equals_zeroing_its_filters_by_hand(vit, shapes_train, root):
    """SeNPIS of a stem convolution (the sample repeated inside the stem), of the residual stream (the
    stem's last convolution tied to every attention's output projection and every MLP's output) and of
    an MLP layer (output ``(N, tokens, channels)``, the sample repeated at its block's input) equals
    zeroing, one root channel at a time, the tied filters of every layer of the group by hand (float64)."""
    model = copy.deepcopy(vit).double()
    images, labels = class_balanced_sample(shapes_train, 1, seed=0)
    images = images.double()
    layer = model.get_submodule(root)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=images[:1],
                                                  unwrapped_parameters=unwrapped_parameters(model))
    prune_out_channels = graph.get_pruner_of_module(layer).prune_out_channels
    channels = graph.get_out_channels(layer)
    group = graph.get_pruning_group(layer, prune_out_channels, list(range(channels)))
    filters = group_filters(group)
    if root == "conv_proj.conv_last":
        assert {tied for tied, _, _ in filters} >= set(_attentions(model))
    importance = SenpisImportance(model, images, labels)
    scores = importance(group)
    assert importance.repeat_at_group  # a stem group ran the sample once up to it, not the fallback
    assert "_process_input" not in vars(model)  # the ViT is left as it was

    @torch.no_grad()
    def class_losses():
        losses = F.cross_entropy(model(images), labels, reduction="none")
        return torch.stack([losses[labels == k].mean() for k in labels.unique()])

    original, by_hand = class_losses(), []
    weighted = [(tied.out_proj if isinstance(tied, nn.MultiheadAttention) else tied, idxs, root_idxs)
                for tied, idxs, root_idxs in filters]  # an attention's filters: its output projection's rows
    saved = {tied: (tied.weight.clone(), None if tied.bias is None else tied.bias.clone()) for tied, _, _ in weighted}
    for channel in range(channels):
        with torch.no_grad():
            for tied, idxs, root_idxs in weighted:
                rows = [idx for idx, root_idx in zip(idxs, root_idxs) if root_idx == channel]
                tied.weight[rows] = 0
                if tied.bias is not None:
                    tied.bias[rows] = 0
        by_hand.append(float((class_losses() - original).abs().mean()))
        with torch.no_grad():
            for tied, (weight, bias) in saved.items():
                tied.weight.copy_(weight)
                if bias is not None:
                    tied.bias.copy_(bias)
    torch.testing.assert_close(scores, torch.tensor(by_hand, dtype=scores.dtype))
    assert scores.max() > 0
