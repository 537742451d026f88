"""CamEngine against pytorch-grad-cam itself, and the engine's promises about the user's model."""
import copy

import numpy as np
import pytest
import pytorch_grad_cam
import torch
import torchvision
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection, get_2d_projection_with_sign_correction

from pescore_nb import CamEngine
from pescore_nb.cam import BACKEND_CAMS, NATIVE_CAMS

LIBRARY_CLASSES = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
                   "layercam": "LayerCAM", "hirescam": "HiResCAM"}
ARCHITECTURES = {"resnet18": ["layer2", "layer4"], "vgg11_bn": ["features.13", "features.27"],
                 "mobilenet_v3_small": ["features.6", "features.12"]}


def seeded_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(weights=None).eval()


def library_maps(model, layer: str, method_class: str, images, targets) -> torch.Tensor:
    """pytorch-grad-cam's own single-layer output (N, H, W)."""
    cam = getattr(pytorch_grad_cam, method_class)(model=model, target_layers=[dict(model.named_modules())[layer]])
    try:
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(maps)


def layer_output(model, layer: str, images) -> np.ndarray:
    captured = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda m, i, o: captured.setdefault("out", o.detach().clone()))
    with torch.no_grad():
        model(images)
    handle.remove()
    return captured["out"].numpy()


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 64, 64, generator=generator), torch.tensor([3, 500, 999])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_native_methods_equal_pytorch_grad_cam(arch, batch):
    images, targets = batch
    model = seeded_model(arch)
    layers = ARCHITECTURES[arch]
    maps = CamEngine(model, layers, list(LIBRARY_CLASSES))(images, targets)
    assert maps.shape == (2, 5, 3, 64, 64) and maps.dtype == torch.float32
    for i, layer in enumerate(layers):
        for j, method in enumerate(LIBRARY_CLASSES):
            expected = library_maps(model, layer, LIBRARY_CLASSES[method], images, targets)
            assert (maps[i, j] - expected).abs().max() < 1e-4, (layer, method)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_eigencam_equals_the_library_projection(arch, batch):
    """Eigen-CAM agrees with the library's sign-corrected projection, and with EigenCAM up to the SVD sign."""
    images, targets = batch
    model = seeded_model(arch)
    layer = ARCHITECTURES[arch][1]
    maps = CamEngine(model, [layer], ["eigencam"])(images, targets)[0, 0]
    activations = layer_output(model, layer, images)
    corrected = scale_cam_image(np.maximum(get_2d_projection_with_sign_correction(activations), 0), (64, 64))
    assert np.abs(maps.numpy() - scale_cam_image(corrected)).max() < 1e-4
    library = library_maps(model, layer, "EigenCAM", images, targets).numpy()
    projection = get_2d_projection(activations)
    flipped = scale_cam_image(scale_cam_image(np.maximum(-projection, 0), (64, 64)))
    for n in range(len(images)):
        assert min(np.abs(maps[n].numpy() - library[n]).max(), np.abs(maps[n].numpy() - flipped[n]).max()) < 1e-4


def test_backend_methods_come_from_pytorch_grad_cam(batch):
    images, targets = batch
    model = seeded_model("resnet18")
    maps = CamEngine(model, ["layer3", "layer4"], ["gradcam", "eigengradcam", "gradcamelementwise"])(images, targets)
    assert maps.shape == (2, 3, 3, 64, 64)
    for i, layer in enumerate(["layer3", "layer4"]):
        for j, method in [(1, "eigengradcam"), (2, "gradcamelementwise")]:
            expected = library_maps(model, layer, BACKEND_CAMS[method], images, targets)
            assert torch.equal(maps[i, j], expected)


def test_every_backend_name_exists_in_the_library():
    for class_name in BACKEND_CAMS.values():
        assert hasattr(pytorch_grad_cam, class_name)


def test_scorecam_runs_through_the_backend(snapshot):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2))
    images = torch.rand(2, 3, 16, 16)
    saved = snapshot(model)
    maps = CamEngine(model, ["1"], ["scorecam"])(images, torch.tensor([0, 1]))
    expected = library_maps(model, "1", "ScoreCAM", images, [0, 1])
    assert torch.allclose(maps[0, 0], expected, atol=1e-6)
    model.train()  # the library leaves models in eval mode; we put back what we found
    saved.training = [True] * len(saved.training)
    saved.assert_unchanged()


def test_one_forward_and_one_autograd_grad_per_batch(batch, monkeypatch):
    images, targets = batch
    model = seeded_model("resnet18")
    forwards = []
    model.register_forward_pre_hook(lambda m, i: forwards.append(1))
    grads = []
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real_grad(*a, **k))
    CamEngine(model, ["layer1", "layer2", "layer3", "layer4"], list(NATIVE_CAMS))(images, targets)
    assert len(forwards) == 1 and len(grads) == 1


def test_batched_maps_equal_one_image_at_a_time(batch):
    images, targets = batch
    engine = CamEngine(seeded_model("resnet18"), ["layer3"], ["gradcam++", "layercam"])
    together = engine(images, targets)
    alone = torch.cat([engine(images[n:n + 1], targets[n:n + 1]) for n in range(3)], dim=2)
    assert (together - alone).abs().max() < 1e-5


def test_layer_modified_in_place_gives_the_maps_of_its_own_output():
    """vgg11's convs feed an in-place ReLU; the map must be of the conv output, not the ReLU's."""
    torch.manual_seed(0)
    model = torchvision.models.vgg11(weights=None).eval()
    reference = copy.deepcopy(model)
    for module in reference.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    images, targets = torch.randn(2, 3, 64, 64), torch.tensor([1, 2])
    maps = CamEngine(model, ["features.16"], ["gradcam", "hirescam"])(images, targets)
    for j, method_class in enumerate(["GradCAM", "HiResCAM"]):
        expected = library_maps(reference, "features.16", method_class, images, targets)
        assert (maps[0, j] - expected).abs().max() < 1e-4


def test_targets_default_to_the_predicted_class(batch):
    images, _ = batch
    model = seeded_model("resnet18")
    output = CamEngine(model, ["layer4"], ["gradcam"]).compute(images)
    with torch.no_grad():
        assert torch.equal(output.targets, model(images).argmax(1))


def test_model_state_is_restored_and_no_parameter_grad_is_filled(batch, snapshot):
    images, targets = batch
    model = seeded_model("resnet18").train()
    model.layer1.eval()  # mixed modes must come back as they were
    model.conv1.weight.requires_grad_(False)
    existing_grad = torch.ones_like(model.fc.weight)
    model.fc.weight.grad = existing_grad
    saved = snapshot(model)
    CamEngine(model, ["layer3", "layer4"], ["gradcam++", "eigencam", "eigengradcam"])(images, targets)
    saved.assert_unchanged()
    assert model.fc.weight.grad is existing_grad and model.layer4[0].conv1.weight.grad is None


def test_degenerate_maps_are_flagged_not_nan():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(2, 2))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every activation is zero after the ReLU: no signal at all
    output = CamEngine(model, ["1"], ["gradcam", "layercam"]).compute(torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
    assert output.degenerate.all()
    assert torch.isfinite(output.heatmaps).all() and output.heatmaps.abs().max() == 0


BAD_CALLS = [
    (dict(layers=["layer5"]), None, ValueError, r"'layer5' is not in ResNet. Closest names: \['layer4'"),
    (dict(layers=["fc"]), None, ValueError, r"Layer 'fc' gives \(3, 1000\).*\(N, C, h, w\)"),
    (dict(cams=["gradcam+++"]), None, ValueError, r"Unknown CAM method\(s\) \['gradcam\+\+\+'\]"),
    ({}, lambda x, t: (x[0], t), ValueError, r"images must be \(N, C, H, W\), got shape \(3, 64, 64\)"),
    ({}, lambda x, t: ((x * 255).to(torch.uint8), t), TypeError, "images must be floating point"),
    ({}, lambda x, t: (x.index_fill(0, torch.tensor([1]), float("nan")), t), ValueError, "NaN or inf"),
    ({}, lambda x, t: (x, t[:2]), ValueError, r"targets must have shape \(3,\)"),
    ({}, lambda x, t: (x, t + 1000), ValueError, r"targets must be class indices in \[0, 1000\)"),
    ({}, lambda x, t: (x, t.float()), TypeError, "targets must be a LongTensor"),
    ({}, lambda x, t: (x[:, :1], t), RuntimeError, r"ResNet failed on images of shape \(3, 1, 64, 64\)"),
]


@pytest.mark.parametrize("engine_args, change_inputs, error, message", BAD_CALLS)
def test_bad_input_gives_a_clear_error_and_leaves_the_model_unchanged(engine_args, change_inputs, error, message,
                                                                      batch, snapshot):
    images, targets = batch
    model = seeded_model("resnet18").train()
    saved = snapshot(model)
    with pytest.raises(error, match=message):
        engine = CamEngine(model, **{"layers": ["layer4"], "cams": ["gradcam"], **engine_args})
        engine(*(change_inputs(images, targets) if change_inputs else (images, targets)))
    saved.assert_unchanged()


def test_an_engine_needs_layers_and_cams():
    model = seeded_model("resnet18")
    with pytest.raises(ValueError, match="at least one layer and one CAM method"):
        CamEngine(model, [], ["gradcam"])


def test_a_layer_the_forward_never_runs_is_named(snapshot):
    class WithSpareBranch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.spare, self.head = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.conv(x).mean(dim=(2, 3)))

    model = WithSpareBranch()
    saved = snapshot(model)
    with pytest.raises(ValueError, match=r"Layer\(s\) \['spare'\] did not run"):
        CamEngine(model, ["conv", "spare"], ["gradcam"])(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))
    saved.assert_unchanged()
