"""CAMs of token (ViT) and channels-last (Swin) layers: equal to pytorch-grad-cam's, never guessed."""
import numpy as np
import pytest
import pytorch_grad_cam
import torch
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction
from torch import nn
from torchvision.models import VisionTransformer, convnext_tiny, swin_t

from pescore_nb import CamEngine, data, layouts, zoo
from test_cam import LIBRARY_CLASSES

VIT_LAYERS = ["encoder.layers.encoder_layer_1.ln_1", "encoder.layers.encoder_layer_2.ln_1"]
SWIN_LAYER = "features.7.1.norm1"


def vit_transform(tensor, height=4, width=4):
    """pytorch-grad-cam's documented ViT transform (its tutorial's reshape_transform)."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def swin_transform(tensor):
    """pytorch-grad-cam's documented Swin transform, without its resize (a torchvision Swin is already a grid)."""
    return tensor.transpose(2, 3).transpose(1, 2)


def small_vit(seed: int = 0) -> VisionTransformer:
    """torchvision's ViT on 32x32 images in 4x4 patches; its head re-initialised (torchvision zeroes it)."""
    torch.manual_seed(seed)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64,
                              num_classes=6).eval()
    nn.init.normal_(model.heads.head.weight, std=0.5)
    return model


def library_maps(model, layer, method_class, images, targets, transform) -> torch.Tensor:
    cam = getattr(pytorch_grad_cam, method_class)(model=model, target_layers=[model.get_submodule(layer)],
                                                  reshape_transform=transform)
    try:
        return torch.from_numpy(cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets]))
    finally:
        cam.activations_and_grads.release()


class Wrapped(nn.Module):
    """A model torchvision's classes do not recognise: nothing is chosen for it."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, images):
        return self.inner(images)


@pytest.fixture(scope="module")
def vit_batch():
    generator = torch.Generator().manual_seed(2)
    return torch.randn(8, 3, 32, 32, generator=generator), torch.arange(8) % 6


def test_vit_maps_equal_pytorch_grad_cam_with_its_transform(vit_batch):
    images, targets = vit_batch
    model = small_vit()
    output = CamEngine(model, VIT_LAYERS, list(LIBRARY_CLASSES)).compute(images, targets)
    assert float(output.degenerate.float().mean()) <= 0.01  # all-zero maps equal all-zero maps: no proof
    for i, layer in enumerate(VIT_LAYERS):
        for j, method in enumerate(LIBRARY_CLASSES):
            expected = library_maps(model, layer, LIBRARY_CLASSES[method], images, targets, vit_transform)
            assert (output.heatmaps[i, j] - expected).abs().max() < 1e-4, (layer, method)


def test_vit_eigencam_equals_the_library_projection_of_the_patch_grid(vit_batch):
    images, targets = vit_batch
    model = small_vit()
    maps = CamEngine(model, VIT_LAYERS[-1:], "eigencam")(images, targets)[0, 0]
    captured = {}
    handle = model.get_submodule(VIT_LAYERS[-1]).register_forward_hook(lambda m, i, o: captured.update(out=o.detach()))
    with torch.no_grad():
        model(images)
    handle.remove()
    grid = vit_transform(captured["out"]).numpy()
    expected = scale_cam_image(scale_cam_image(np.maximum(get_2d_projection_with_sign_correction(grid), 0), (32, 32)))
    assert np.abs(maps.numpy() - expected).max() < 1e-4


def test_swin_maps_equal_pytorch_grad_cam_and_are_not_read_as_channels_first():
    torch.manual_seed(0)
    model = swin_t(weights=None, num_classes=6).eval()
    images, targets = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)), torch.tensor([1, 4])
    methods = ["gradcam", "gradcam++"]
    output = CamEngine(model, SWIN_LAYER, methods).compute(images, targets)
    assert float(output.degenerate.float().mean()) <= 0.01
    for j, method in enumerate(methods):
        expected = library_maps(model, SWIN_LAYER, LIBRARY_CLASSES[method], images, targets, swin_transform)
        assert (output.heatmaps[0, j] - expected).abs().max() < 1e-4, method
    with pytest.raises(ValueError, match="'inner.features.7.1.norm1' \\(LayerNorm\\) gives \\(2, 2, 2, 768\\), which is "
                                         "channels-last .* reshape_transform='swin'"):
        CamEngine(Wrapped(model), "inner." + SWIN_LAYER, methods)(images, targets)
    explicit = CamEngine(Wrapped(model), "inner." + SWIN_LAYER, methods, reshape_transform="swin")(images, targets)
    assert torch.equal(explicit, output.heatmaps)


def test_tokens_without_a_known_model_or_transform_are_refused_and_a_transform_fixes_it(vit_batch, snapshot):
    images, targets = vit_batch
    model = Wrapped(small_vit())
    before = snapshot(model)
    layer = "inner." + VIT_LAYERS[-1]
    with pytest.raises(ValueError, match="gives tokens \\(8, 17, 32\\), .* reshape_transform='vit'"):
        CamEngine(model, layer, "gradcam")(images, targets)
    before.assert_unchanged()
    by_name = CamEngine(model, layer, "gradcam", reshape_transform="vit")(images, targets)
    by_layer = CamEngine(model, layer, "gradcam", reshape_transform={layer: layouts.TokenGrid(1)})(images, targets)
    automatic = CamEngine(model.inner, VIT_LAYERS[-1], "gradcam")(images, targets)
    assert torch.equal(by_name, automatic) and torch.equal(by_layer, automatic)


def test_a_layer_norm_inside_a_convnext_block_is_refused_but_the_block_output_is_not():
    torch.manual_seed(0)
    model = convnext_tiny(weights=None, num_classes=3).eval()
    images = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="'features.1.0.block.2' \\(LayerNorm\\) gives .* channels-last"):
        CamEngine(model, "features.1.0.block.2", "gradcam")(images, torch.tensor([0]))
    maps = CamEngine(model, ["features.1.0", "features.2.0"], "gradcam")(images, torch.tensor([0]))  # NCHW, LayerNorm2d
    assert maps.shape == (2, 1, 1, 32, 32)


def test_prefix_tokens_and_bad_transforms_name_the_fix():
    with pytest.raises(ValueError, match="17 tokens less 2 prefix token\\(s\\) leave 15, not a square patch grid"):
        layouts.TokenGrid(prefix_tokens=2)(torch.zeros(1, 17, 4))  # a ViT's 1 + 16 read as DeiT's
    assert layouts.TokenGrid(prefix_tokens=2)(torch.zeros(1, 18, 4)).shape == (1, 4, 4, 4)
    with pytest.raises(ValueError, match="Unknown reshape_transform 'deit'; use 'vit', 'swin', an import path"):
        CamEngine(small_vit(), VIT_LAYERS[-1], "gradcam", reshape_transform="deit")
    with pytest.raises(ValueError, match="cannot be imported"):
        CamEngine(small_vit(), VIT_LAYERS[-1], "gradcam", reshape_transform="no_such_module:transform")


def test_evaluate_scores_a_vit_and_an_untrained_one_is_called_out(vit_batch):
    import pescore_nb as pe
    from pescore_nb.scores import DegenerateMapWarning
    from torch.utils.data import TensorDataset

    images, targets = vit_batch
    data = TensorDataset(images, targets)
    ds = pe.evaluate(small_vit(0), {"other": small_vit(1)}, data, layers=VIT_LAYERS[-1], cams="gradcam++",
                     progress=False)
    assert float(ds.pe.sel(model="reference").min()) == 1.0 and float(ds.pe.sel(model="other").max()) < 1.0
    torch.manual_seed(0)
    untrained = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32,
                                  mlp_dim=64, num_classes=6)  # torchvision zeroes the head: no gradient
    with pytest.warns(DegenerateMapWarning, match="Every map of the reference is degenerate.*VisionTransformer "
                                                  "zero-initialises its head"):
        pe.evaluate(untrained, {}, data, layers=VIT_LAYERS[-1], cams="gradcam++", progress=False)


@pytest.mark.slow
def test_the_zoo_vit_maps_equal_pytorch_grad_cam_on_the_shapes_test_images():
    """The trained zoo ViT (its 8x8 token grid) on test images, every native method: the engine's maps
    equal pytorch-grad-cam's with its documented transform; few maps are degenerate, so this proves something."""
    model = zoo.load("vit", "shapes", progress=False)
    test = data.builtin("shapes", "test")
    picked = range(0, len(test), 25)
    images, targets = torch.stack([test[i][0] for i in picked]), test.targets[list(picked)]
    layer = model.cam_layers[0]
    output = CamEngine(model, [layer], list(LIBRARY_CLASSES)).compute(images, targets)
    assert float(output.degenerate.float().mean()) <= 0.01  # all-zero maps equal all-zero maps: no proof
    for j, method in enumerate(LIBRARY_CLASSES):
        expected = library_maps(model, layer, LIBRARY_CLASSES[method], images, targets,
                                lambda tensor: vit_transform(tensor, 8, 8))
        assert (output.heatmaps[0, j] - expected).abs().max() < 1e-4, method
