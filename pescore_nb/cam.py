"""`CamEngine`: every requested layer and CAM method from one forward and one backward pass.

Maps follow pytorch-grad-cam's convention (ReLU -> min-max -> bilinear resize to the input size
-> min-max), so native maps equal ``pytorch_grad_cam``'s single-layer output. Methods that are not
native run through pytorch-grad-cam itself, one call per layer.
"""
from __future__ import annotations

import contextlib
import difflib
import io
import warnings
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import layouts

EPS = 1e-7  # pytorch-grad-cam's min-max eps; a map whose range is below it is degenerate


# Native methods: (activations (N, C, h, w), gradients (N, C, h, w) or None) -> raw map (N, h, w).
def _weighted_sum(activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Channel-weighted sum of activations: weights (N, C) -> (N, h, w)."""
    return torch.einsum("nc,nchw->nhw", weights, activations)


def gradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: channels weighted by their mean gradient."""
    return _weighted_sum(activations, gradients.mean(dim=(2, 3)))


def gradcam_plusplus(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (eq. 19 of Chattopadhay et al. 2018, as pytorch-grad-cam computes it).

    alpha = g^2 / (2 g^2 + sum(A) g^3 + 1e-6) is already 0 where g = 0, so no mask is needed.
    """
    sum_activations = activations.sum(dim=(2, 3), keepdim=True)
    grads_2 = gradients * gradients
    denominator = (gradients * sum_activations).add_(2).mul_(grads_2).add_(1e-6)  # in place: 2 buffers, not 6
    alpha = grads_2.div_(denominator).mul_(gradients.clamp(min=0))
    return _weighted_sum(activations, alpha.sum(dim=(2, 3)))


def xgradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM: gradients weighted by the normalised activations."""
    sum_activations = activations.sum(dim=(2, 3), keepdim=True)
    return _weighted_sum(activations, (gradients * activations / (sum_activations + EPS)).sum(dim=(2, 3)))


def layercam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """LayerCAM: activations weighted pixel-wise by their positive gradients."""
    return (gradients.clamp(min=0) * activations).sum(dim=1)


def hirescam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """HiResCAM: activations weighted pixel-wise by their gradients."""
    return (gradients * activations).sum(dim=1)


def eigencam(activations: torch.Tensor, gradients: None = None) -> torch.Tensor:
    """Eigen-CAM: the centred activations projected on their first right singular vector.

    An SVD fixes that vector only up to its sign, which differs between LAPACK builds and
    devices; we flip each projection so its largest magnitude is positive (the correction
    pytorch-grad-cam ships as ``get_2d_projection_with_sign_correction``), so maps are the same
    on every device.
    """
    batch, channels = activations.shape[:2]
    flat = activations.nan_to_num(0.0).reshape(batch, channels, -1).transpose(1, 2)  # (N, h*w, C)
    centred = flat - flat.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[:, 0, :, None])[..., 0]  # (N, h*w)
    flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    projection = torch.where(flip[:, None], -projection, projection)
    return projection.reshape(batch, *activations.shape[2:])


NATIVE_CAMS: dict[str, Callable] = {
    "gradcam": gradcam, "gradcam++": gradcam_plusplus, "xgradcam": xgradcam,
    "layercam": layercam, "hirescam": hirescam, "eigencam": eigencam,
}
GRADIENT_FREE = {"eigencam"}

# Methods computed by pytorch-grad-cam: our name -> the library's class name.
BACKEND_CAMS: dict[str, str] = {
    "scorecam": "ScoreCAM", "ablationcam": "AblationCAM", "eigengradcam": "EigenGradCAM",
    "gradcamelementwise": "GradCAMElementWise", "fullgrad": "FullGrad", "randomcam": "RandomCAM",
    "kpcacam": "KPCA_CAM", "shapleycam": "ShapleyCAM", "fem": "FEM", "segeigencam": "SegEigenCAM",
}
CAMS = tuple(NATIVE_CAMS) + tuple(BACKEND_CAMS)
LAYER_FREE = {"fullgrad"}  # uses every bias layer, whatever layer is asked for


def normalise_maps(raw_maps: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """pytorch-grad-cam's convention for raw maps ``(N, h, w)`` -> maps ``(N, H, W)`` in [0, 1].

    ReLU, min-max (eps 1e-7), bilinear resize to ``size``, min-max again. Also returns the
    degenerate flags ``(N,)``: maps whose range after ReLU is below eps (nothing to show).
    """
    maps = raw_maps.float().clamp(min=0)
    value_range = maps.amax(dim=(1, 2)) - maps.amin(dim=(1, 2))
    maps = _min_max_(maps)
    maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _min_max_(maps), value_range <= EPS


def _min_max_(maps: torch.Tensor) -> torch.Tensor:
    """Min-max each map ``(N, h, w)`` to [0, 1] in place (pytorch-grad-cam's eps)."""
    maps -= maps.amin(dim=(1, 2), keepdim=True)
    return maps.div_(EPS + maps.amax(dim=(1, 2), keepdim=True))


class CamOutput(NamedTuple):
    """What one engine call gives, all on the engine's device.

    heatmaps: ``(layers, cams, N, H, W)`` float32 in [0, 1];
    logits: ``(N, classes)``; targets: ``(N,)`` the explained classes;
    degenerate: ``(layers, cams, N)`` bool, True where a map had no signal.
    """

    heatmaps: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor
    degenerate: torch.Tensor


class _SavedState:
    """The parts of a model that the engine changes, to be put back exactly."""

    def __init__(self, model: nn.Module):
        self.training = {module: module.training for module in model.modules()}
        self.requires_grad = {param: param.requires_grad for param in model.parameters()}
        self.grads = {param: param.grad for param in model.parameters()}
        self.device = _model_device(model)

    def restore(self, model: nn.Module) -> None:
        model.to(self.device)
        for module, training in self.training.items():
            module.training = training
        for param, requires_grad in self.requires_grad.items():
            param.requires_grad_(requires_grad)
            param.grad = self.grads[param]


def _model_device(model: nn.Module) -> torch.device:
    tensor: torch.Tensor | None = next(model.parameters(), None)
    tensor = tensor if tensor is not None else next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


class CamEngine:
    """Class activation maps of one model for several layers and CAM methods at once.

    ``CamEngine(model, ["layer3", "layer4"], ("gradcam", "gradcam++"))(images, targets)`` returns
    ``(layers, cams, N, H, W)`` float32 maps in [0, 1] for images ``(N, C, H, W)`` and class
    indices ``targets (N,)``. Native methods share one forward and one ``torch.autograd.grad``;
    parameters' ``.grad`` are never filled, no graph outlives a call, and the model's hooks,
    train/eval modes, ``requires_grad`` flags and device are restored even when a call raises.
    Use ``with engine:`` to keep the model prepared (on the engine's device) across many calls.

    ``reshape_transform`` brings a layer's output to ``(N, C, h, w)`` (:mod:`pescore_nb.layouts`):
    ``None`` chooses it for torchvision's ``VisionTransformer`` (tokens) and ``SwinTransformer``
    (channels-last) and uses other outputs as they are; ``"vit"``, ``"swin"``, a callable with
    pytorch-grad-cam's contract (e.g. ``layouts.TokenGrid(prefix_tokens=2)`` for DeiT), or a dict
    of those by layer. Token outputs, and 4-D outputs that are channels-last by their kind, are
    refused without one: a layout is never guessed.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, cams: Sequence[str] | str = ("gradcam++",),
                 device: str | torch.device | None = None, reshape_transform=None):
        if isinstance(layers, str):
            layers = [layers]
        if isinstance(cams, str):
            cams = [cams]
        if not layers or not cams:
            raise ValueError("CamEngine needs at least one layer and one CAM method, e.g. "
                             "CamEngine(model, ['layer4'], ['gradcam++']).")
        self.model = model
        self.layers = tuple(layers)
        self.cams = tuple(method.lower() for method in cams)
        repeated = sorted({name for name in self.layers + self.cams
                           if (self.layers + self.cams).count(name) > 1})
        if repeated:
            raise ValueError(f"{repeated} listed more than once; give each layer and CAM method once.")
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.modules = {name: _find_layer(model, name) for name in self.layers}
        self.transforms = layouts.resolve(model, self.modules, reshape_transform)
        self._channels_last = {name for name, module in self.modules.items()
                               if self.transforms[name] is None and layouts.channels_last_suspect(model, name, module)}
        unknown = [method for method in self.cams if method not in CAMS]
        if unknown:
            raise ValueError(f"Unknown CAM method(s) {unknown}; choose from {list(CAMS)}.")
        if LAYER_FREE & set(self.cams):
            warnings.warn(f"{sorted(LAYER_FREE & set(self.cams))} ignore the requested layers (pytorch-grad-cam's "
                          "FullGrad uses every bias layer): their maps are the same at every layer.", stacklevel=2)
        self._native = [method for method in self.cams if method in NATIVE_CAMS]
        self._needs_gradients = any(method not in GRADIENT_FREE for method in self._native)
        self._clone_outputs: set[str] = set()  # layers whose output is later modified in place
        self._captured: dict[str, tuple[torch.Tensor, int]] = {}
        self._handles: list = []
        self._saved: _SavedState | None = None
        self._depth = 0

    # --- preparing the model and putting it back -------------------------------------------
    def __enter__(self) -> "CamEngine":
        if self._depth == 0:
            self._saved = _SavedState(self.model)
            try:
                self.model.to(self.device)
                self.model.eval()
                for param in self.model.parameters():
                    param.requires_grad_(False)
                self._handles = [module.register_forward_hook(self._capture_hook(name))
                                 for name, module in self.modules.items()]
            except BaseException:
                self._restore()
                raise
        self._depth += 1
        return self

    def __exit__(self, *exc_info) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._restore()

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._captured = {}
        if self._saved is not None:
            self._saved.restore(self.model)
            self._saved = None

    def _capture_hook(self, name: str):
        def hook(module, inputs, output):
            if not self._handles:  # a backend method is running the model
                return None
            self._check_layout(name, output)
            self._captured[name] = (output, output._version)
            return output.clone() if name in self._clone_outputs else None
        return hook

    def _check_layout(self, name: str, output) -> None:
        """Refuse an output that is not ``(N, C, h, w)`` and has no transform, naming the fix."""
        if self.transforms[name] is not None:
            return
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        if isinstance(output, torch.Tensor) and output.ndim == 3:
            raise ValueError(f"Layer '{name}' gives tokens {shape}, but CAMs need (N, C, h, w): pass "
                             "reshape_transform='vit' (a class token, then a square patch grid), "
                             "layouts.TokenGrid(prefix_tokens=2) for DeiT, or your own callable.")
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(f"Layer '{name}' gives {shape}, but CAMs need an (N, C, h, w) tensor: "
                             "choose a convolutional layer or block output.")
        if name in self._channels_last:
            raise ValueError(f"Layer '{name}' ({type(self.modules[name]).__name__}) gives {shape}, which is "
                             "channels-last (N, H, W, C) for a layer of its kind; pass reshape_transform='swin' "
                             "to permute it, or choose a layer whose output is (N, C, h, w) (e.g. the block's "
                             "output).")

    # --- computing maps ----------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Maps ``(layers, cams, N, H, W)`` of ``targets (N,)`` (None: the predicted classes)."""
        return self.compute(images, targets).heatmaps

    def compute(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> CamOutput:
        """Maps, logits, explained targets and degenerate flags of one batch (see `CamOutput`)."""
        check_images(images)
        if targets is not None:
            _check_targets(targets, len(images))
        with self:
            images = images.to(self.device, non_blocking=True)
            logits, activations = self._forward(images)
            if targets is None:
                targets = logits.argmax(dim=1)
            else:  # checked where the caller keeps them (the CPU, usually): no device sync
                if int(targets.max()) >= logits.shape[1]:
                    raise ValueError(f"targets must be class indices in [0, {logits.shape[1]}) for this "
                                     f"model's {logits.shape[1]} outputs, got max {int(targets.max())}.")
                targets = targets.to(self.device, non_blocking=True)
            gradients = self._gradients(logits, targets, activations)
            activations = [self._laid_out(name, activation.detach()) for name, activation in zip(self.layers, activations)]
            gradients = [None if gradient is None else self._laid_out(name, gradient)
                         for name, gradient in zip(self.layers, gradients)]
            size = (int(images.shape[-2]), int(images.shape[-1]))
            per_method = {method: [normalise_maps(NATIVE_CAMS[method](activations[i], gradients[i]), size)
                                   for i in range(len(self.layers))]
                          for method in self._native}
            per_method.update({method: [self._backend_maps(method, layer, images, targets)
                                        for layer in self.layers]
                               for method in self.cams if method in BACKEND_CAMS})
            heatmaps = torch.stack([torch.stack([per_method[m][i][0] for m in self.cams])
                                    for i in range(len(self.layers))])
            degenerate = torch.stack([torch.stack([per_method[m][i][1] for m in self.cams])
                                      for i in range(len(self.layers))])
            return CamOutput(heatmaps, logits.detach(), targets, degenerate)

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(N, classes)`` and each layer's raw output (before its layout transform), in-place safe."""
        for _ in range(2):
            self._captured = {}
            with torch.set_grad_enabled(self._needs_gradients):
                try:
                    logits = self.model(images.detach().requires_grad_(self._needs_gradients))
                except RuntimeError as error:
                    raise RuntimeError(f"{type(self.model).__name__} failed on images of shape "
                                       f"{tuple(images.shape)}: {error}\nCheck that the images' channels "
                                       "and size are what the model expects.") from error
            modified = {name for name, (output, version) in self._captured.items() if output._version != version}
            if not modified:
                break
            self._clone_outputs |= modified  # capture a copy the next in-place op cannot touch
        check_logits(logits, len(images))
        missing = [name for name in self.layers if name not in self._captured]
        if missing:
            raise ValueError(f"Layer(s) {missing} did not run in the model's forward pass; choose "
                             "layers that the forward uses.")
        activations = [self._captured[name][0] for name in self.layers]
        self._captured = {}
        return logits, activations

    def _laid_out(self, name: str, output: torch.Tensor) -> torch.Tensor:
        """A layer's output (or its gradient) as ``(N, C, h, w)`` through its transform."""
        transform = self.transforms[name]
        if transform is None:
            return output
        laid_out = transform(output)
        if not isinstance(laid_out, torch.Tensor) or laid_out.ndim != 4:
            shape = tuple(laid_out.shape) if isinstance(laid_out, torch.Tensor) else type(laid_out).__name__
            raise ValueError(f"reshape_transform {transform!r} of layer '{name}' gave {shape}, not (N, C, h, w).")
        return laid_out

    def _gradients(self, logits, targets, activations) -> list[torch.Tensor | None]:
        """d(sum of target logits)/d(layer output) for each layer: one ``autograd.grad`` call."""
        if not self._needs_gradients:
            return [None] * len(activations)
        target_score = logits.gather(1, targets[:, None]).sum()
        gradients = torch.autograd.grad(target_score, activations, allow_unused=True)
        return [torch.zeros_like(act) if grad is None else grad for act, grad in zip(activations, gradients)]

    def _backend_maps(self, method: str, layer: str, images: torch.Tensor,
                      targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pytorch-grad-cam call: maps ``(N, H, W)`` and degenerate flags ``(N,)``."""
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        handles, self._handles = self._handles, []  # our capture hooks stand aside
        with contextlib.redirect_stdout(io.StringIO()):  # FullGrad prints on every call; we warned once
            cam = getattr(pytorch_grad_cam, BACKEND_CAMS[method])(model=self.model,
                                                                  target_layers=[self.modules[layer]],
                                                                  reshape_transform=self.transforms[layer])
        try:
            maps = cam(input_tensor=images.detach().requires_grad_(True),
                       targets=[ClassifierOutputTarget(int(t)) for t in targets.tolist()])
        finally:
            cam.activations_and_grads.release()
            self._handles = handles
        maps = torch.from_numpy(maps).to(self.device)
        return maps, maps.amax(dim=(1, 2)) <= EPS


def _find_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.3)
        raise ValueError(f"Layer '{name}' is not in {type(model).__name__}. Closest names: {close}. "
                         "Layers are qualified module names from model.named_modules().")
    return modules[name]


def check_images(images) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (N, C, H, W), got {type(images).__name__}.")
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}; "
                         "add a batch dimension with images[None] for one image.")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point, got {images.dtype}; convert with "
                        "images.float() (and scale to the range the model was trained on).")
    if len(images) == 0:
        raise ValueError("images is an empty batch (N = 0).")
    if not torch.isfinite(images.sum()) and not torch.isfinite(images).all():  # the sum: one cheap pass
        raise ValueError("images contain NaN or inf values; clean or re-normalise the data first.")


def check_logits(logits, count: int) -> None:
    """A model's output must be one logits tensor ``(count, classes)``."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != count:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"The model must return logits (N, classes) for N images, got {shape}; wrap a model "
                         "that returns a tuple or dict so that forward returns the class scores alone.")


def _check_targets(targets, count: int) -> None:
    if not isinstance(targets, torch.Tensor) or targets.dtype not in (torch.int64, torch.int32):
        raise TypeError("targets must be a LongTensor of class indices (N,), got "
                        f"{getattr(targets, 'dtype', type(targets).__name__)}.")
    if targets.shape != (count,):
        raise ValueError(f"targets must have shape ({count},), one class per image, got {tuple(targets.shape)}.")
    if int(targets.min()) < 0:
        raise ValueError(f"targets must be class indices >= 0, got min {int(targets.min())}.")
