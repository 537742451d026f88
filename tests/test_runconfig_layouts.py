"""``reshape_transform`` in the YAML config of ``pescore run``: token layers scored as ``evaluate`` scores them,
bad values refused when the config is read."""
import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import Subset

from pescore_nb import cli, data, evaluate, layouts, load, runconfig, schema
from pescore_nb.specs import ConfigError

IMAGES = 12
LAYER = "mlp"  # TokenNet's token layer: (N, prefix_tokens + 16, 32), non-negative


class TokenNet(nn.Module):
    """A user's token model that torchvision does not know: 32x32 images in 8x8 patches (a 4x4 grid) after
    ``prefix_tokens`` learned tokens (1 like ViT's class token, 2 like DeiT's), weights drawn from ``seed``.
    Its head's weights are positive, so every class has evidence and an untrained model's maps are not
    degenerate."""

    def __init__(self, prefix_tokens: int = 1, seed: int = 0, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.patches = nn.Conv2d(3, width, kernel_size=8, stride=8)
        self.prefix = nn.Parameter(torch.zeros(1, prefix_tokens, width))
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU())
        self.head = nn.Linear(2 * width, num_classes)
        generator = torch.Generator().manual_seed(seed)
        for parameter in self.parameters():
            nn.init.normal_(parameter, std=0.5, generator=generator)
        self.head.weight.data.abs_()

    def forward(self, images):
        tokens = self.patches(images).flatten(2).transpose(1, 2)  # (N, 16, width)
        tokens = torch.cat([self.prefix.expand(len(images), -1, -1), tokens], dim=1)
        return self.head(self.mlp(self.norm(tokens)).mean(dim=1))


def drop_two_tokens(tokens):
    """A user's own transform (pytorch-grad-cam's contract): (N, 2 + 16, D) -> (N, D, 4, 4)."""
    return tokens[:, 2:, :].reshape(len(tokens), 4, 4, -1).permute(0, 3, 1, 2)


MODEL = {"factory": f"{__name__}:TokenNet"}


def write_config(folder, prefix_tokens: int, **changes):
    config = {"reference": {**MODEL, "kwargs": {"prefix_tokens": prefix_tokens, "seed": 0}},
              "candidates": {"theirs": {**MODEL, "kwargs": {"prefix_tokens": prefix_tokens, "seed": 1}}},
              "data": {"source": "digits", "limit": IMAGES}, "layers": [LAYER], "cams": ["gradcam", "gradcam++"],
              "output": "out", **changes}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({key: value for key, value in config.items() if value is not None}))
    return path


@pytest.mark.parametrize("prefix_tokens, given", [
    (1, "vit"),
    (2, {"name": "vit", "prefix_tokens": 2}),
    (2, {LAYER: {"name": "vit", "prefix_tokens": 2}}),
    (2, f"{__name__}:drop_two_tokens"),
])
def test_run_scores_token_layers_as_evaluate_does_with_the_same_transform(prefix_tokens, given, tmp_path, capsys):
    path = write_config(tmp_path, prefix_tokens, reshape_transform=given)
    assert cli.main(["run", str(path)]) == 0, capsys.readouterr().err
    run = load(tmp_path / "out" / "results.nc", lazy=False)
    models = {"theirs": TokenNet(prefix_tokens, seed=1).eval()}
    images = Subset(data.builtin("digits", "test"), range(IMAGES))
    direct = evaluate(TokenNet(prefix_tokens, seed=0).eval(), models, images, layers=[LAYER],
                      cams=["gradcam", "gradcam++"],
                      reshape_transform=layouts.TokenGrid(prefix_tokens))
    compared = [schema.REFERENCE, "theirs"]
    maps = run[schema.HEATMAP].sel(model=compared).values
    assert maps.shape == direct[schema.HEATMAP].sel(model=compared).shape
    assert float(run[schema.DEGENERATE].sel(model=compared).mean()) <= 0.01  # equal all-zero maps prove nothing
    np.testing.assert_allclose(maps, direct[schema.HEATMAP].sel(model=compared).values, atol=1e-6)
    np.testing.assert_allclose(run[schema.PE].sel(model=compared).values,
                               direct[schema.PE].sel(model=compared).values, atol=1e-6)


BAD_TRANSFORMS = {  # case: (reshape_transform, layers, the whole message)
    "unknown name": ("vti", [LAYER], "reshape_transform: unknown transform 'vti'; did you mean 'vit'? give one of "
                     "['swin', 'vit'], an import path 'package.module:callable', or {name: vit, prefix_tokens: 2}."),
    "negative prefix_tokens": ({"name": "vit", "prefix_tokens": -1}, [LAYER],
                               "reshape_transform.prefix_tokens: got -1; give the tokens before the patch grid, "
                               "an integer >= 0 (1 for ViT's class token, 2 for DeiT)."),
    "prefix_tokens not a number": ({"name": "vit", "prefix_tokens": "two"}, [LAYER],
                                   "reshape_transform.prefix_tokens: got 'two'; give the tokens before the patch "
                                   "grid, an integer >= 0 (1 for ViT's class token, 2 for DeiT)."),
    "prefix_tokens a flag": ({"name": "vit", "prefix_tokens": True}, [LAYER],
                             "reshape_transform.prefix_tokens: got True; give the tokens before the patch grid, "
                             "an integer >= 0 (1 for ViT's class token, 2 for DeiT)."),
    "prefix_tokens with swin": ({"name": "swin", "prefix_tokens": 1}, [LAYER],
                                "reshape_transform.prefix_tokens: goes only with name: vit, not 'swin'; remove it."),
    "misspelt key": ({"name": "vit", "prefix": 2}, [LAYER],
                     "reshape_transform.prefix: unknown key; did you mean 'prefix_tokens'? known keys: "
                     "['name', 'prefix_tokens']."),
    "a number": (3, [LAYER], "reshape_transform: got 3; give one of ['swin', 'vit'], an import path "
                 "'package.module:callable', or {name: vit, prefix_tokens: 2}."),
    "layer not listed": ({"blocks.norm": "vit"}, [LAYER],
                         "reshape_transform.blocks.norm: is not one of layers ['mlp']; give each listed layer "
                         "its transform, or one transform as {name: vit, prefix_tokens: 1}."),
    "by layer without layers": ({LAYER: "vit"}, None, "reshape_transform: gives transforms by layer ['mlp'] but "
                                "the config lists no layers; add them, e.g. layers: [mlp]."),
    "bad prefix_tokens of a layer": ({LAYER: {"name": "vit", "prefix_tokens": -2}}, [LAYER],
                                     "reshape_transform.mlp.prefix_tokens: got -2; give the tokens before the "
                                     "patch grid, an integer >= 0 (1 for ViT's class token, 2 for DeiT)."),
}


@pytest.mark.parametrize("case", list(BAD_TRANSFORMS))
def test_a_bad_reshape_transform_is_refused_when_the_config_is_read(case, tmp_path):
    given, layers, message = BAD_TRANSFORMS[case]
    with pytest.raises(ConfigError) as refused:
        runconfig.read(write_config(tmp_path, 1, reshape_transform=given, layers=layers))
    assert str(refused.value) == message


def test_an_import_path_that_does_not_import_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"^reshape_transform\.name: cannot import 'nowhere:grid' .*give an "
                       r"importable 'package.module:callable'"):
        runconfig.read(write_config(tmp_path, 1, reshape_transform={"name": "nowhere:grid"}))


@pytest.mark.parametrize("given, field, needle", [
    ("vit", "reshape_transform", "18 tokens less 1 prefix token(s) leave 17, not a square patch grid"),
    (None, "layers", "gives tokens (1, 18, 32), but CAMs need (N, C, h, w)"),
])
def test_a_transform_that_does_not_fit_the_reference_is_refused_before_any_model_is_scored(
        given, field, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "evaluate", lambda *args, **kwargs: pytest.fail("scored a model"))
    path = write_config(tmp_path, 2, reshape_transform=given)
    assert cli.main(["run", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith(f"pescore: error: {field}: ") and needle in error
    assert not (tmp_path / "out" / "results.nc").exists()
