"""The zoo's ViT: deterministic training from the seed alone, its CAM layer, its randomised copy."""

import torch
from torch import nn

from pescore_nb import controls, data, zoo

TINY = {"stem": ((8, 2), (8, 2), (16, 2)), "num_layers": 2, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32}


def _tiny_vit() -> zoo.ViT:
    return zoo.ViT(6, **TINY)


def _train(model: zoo.ViT, seed: int) -> dict[str, torch.Tensor]:
    images = data.shapes(16, size=64)
    return zoo.train(model, images, epochs=1, batch_size=8, seed=seed).state_dict()


def test_training_draws_every_parameter_from_the_seed():
    """A model whose class token, position embedding and attention projections were changed before
    training ends bit-identical to a fresh one: train() re-draws them all from the seed."""
    fresh = _train(_tiny_vit(), seed=3)
    disturbed = _tiny_vit()
    with torch.no_grad():
        for parameter in disturbed.parameters():
            parameter.add_(torch.randn_like(parameter))
    again = _train(disturbed, seed=3)
    assert fresh.keys() == again.keys()
    assert all(torch.equal(fresh[name], again[name]) for name in fresh)
    other = _train(_tiny_vit(), seed=4)
    assert not torch.equal(fresh["encoder.pos_embedding"], other["encoder.pos_embedding"])
    assert not torch.equal(fresh["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"],
                           other["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"])


def test_the_cam_layer_is_the_last_blocks_input_norm_and_gives_the_token_grid():
    model = _tiny_vit().eval()
    assert model.cam_layers == ("encoder.layers.encoder_layer_1.ln_1",)
    outputs = []
    model.get_submodule(model.cam_layers[0]).register_forward_hook(lambda m, i, out: outputs.append(out))
    model(torch.rand(2, 3, 64, 64))
    assert outputs[0].shape == (2, 1 + 8 * 8, 16)


def test_the_zoo_builds_a_vit_for_the_images_size():
    assert zoo.build("vit", 10, 32).image_size == 32
    assert zoo.cam_layers("vit", "shapes") == ("encoder.layers.encoder_layer_3.ln_1",)
    assert zoo.training("vit", "shapes")["epochs"] == zoo.VIT_EPOCHS != zoo.training("vgg", "shapes")["epochs"]


def test_the_randomised_copy_redraws_the_attention_from_the_cam_layer_on():
    model = _tiny_vit().eval()
    layer = model.cam_layers[0]
    copy = controls.randomised(model, layer, seed=0)
    before, after = model.state_dict(), copy.state_dict()
    block = layer.rsplit(".", 1)[0]
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert f"{block}.self_attention.in_proj_weight" in changed
    assert f"{block}.self_attention.out_proj.weight" in changed and f"{block}.mlp.0.weight" in changed
    assert "heads.head.weight" in changed
    assert not any(name.startswith(("conv_proj", "encoder.layers.encoder_layer_0", "class_token")) for name in changed)
    assert isinstance(copy.get_submodule(f"{block}.self_attention"), nn.MultiheadAttention)
