"""The PE-score terms against independent references: scikit-image's SSIM and hand-computed cases."""
import dataclasses

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from pescore_nb import PEConfig
from pescore_nb.metrics import combine, confidence, iou, ssim


def skimage_ssim(a: np.ndarray, b: np.ndarray, config: PEConfig = PEConfig()) -> float:
    """skimage's SSIM, whose Gaussian window is 2 * int(3.5 * sigma + 0.5) + 1 wide."""
    return structural_similarity(a, b, gaussian_weights=True, sigma=config.ssim_sigma,
                                 use_sample_covariance=False, data_range=1.0, K1=config.ssim_k1, K2=config.ssim_k2)


def structured_maps(rng, size=48):
    yy, xx = np.mgrid[0:size, 0:size] / size
    blob = lambda cy, cx, w: np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / w)
    return [(blob(0.5, 0.5, 0.02), blob(0.55, 0.45, 0.03)),
            (blob(0.2, 0.3, 0.01), blob(0.8, 0.7, 0.05)),
            (np.clip(xx + 0.1 * rng.standard_normal(xx.shape), 0, 1), np.clip(yy, 0, 1)),
            ((xx > 0.5).astype(float), (xx > 0.4).astype(float))]


def test_ssim_equals_skimage_on_random_and_structured_maps():
    rng = np.random.default_rng(0)
    pairs = [(rng.uniform(size=(48, 48)), rng.uniform(size=(48, 48))) for _ in range(4)] + structured_maps(rng)
    ours = ssim(torch.tensor(np.stack([a for a, _ in pairs]), dtype=torch.float32),
                torch.tensor(np.stack([b for _, b in pairs]), dtype=torch.float32))
    expected = [np.clip(skimage_ssim(a.astype(np.float32).astype(np.float64),
                                     b.astype(np.float32).astype(np.float64)), 0, 1) for a, b in pairs]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4)


def test_ssim_follows_its_config():
    rng = np.random.default_rng(1)
    a, noise = rng.uniform(size=(2, 40, 40))
    b = 0.7 * a + 0.3 * noise
    config = PEConfig(ssim_window=9, ssim_sigma=1.0, ssim_k1=0.02, ssim_k2=0.05)
    ours = ssim(torch.tensor(a)[None], torch.tensor(b)[None], config)
    assert ours.item() == pytest.approx(np.clip(skimage_ssim(a, b, config), 0, 1), abs=1e-6)
    assert ours.item() != pytest.approx(ssim(torch.tensor(a)[None], torch.tensor(b)[None]).item(), abs=1e-4)


def test_ssim_of_a_map_with_itself_is_exactly_one_and_batches_keep_their_shape():
    maps = torch.rand(2, 3, 32, 32)
    values = ssim(maps, maps)
    assert values.shape == (2, 3) and torch.all(values == 1.0)


def test_ssim_refuses_maps_smaller_than_the_window():
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        ssim(torch.rand(1, 8, 8), torch.rand(1, 8, 8))


def test_iou_on_hand_computed_cases():
    a = torch.zeros(3, 4, 4)
    b = torch.zeros(3, 4, 4)
    a[0, :2, :2] = 1.0           # 4 pixels
    b[0, :2, :3] = 0.6           # 6 pixels, 4 shared: 4 / 6
    a[1, 0, 0] = 0.49            # below the threshold: both empty -> 1
    a[2, 0, :] = 0.5             # the threshold itself counts (>=)
    b[2, 1, :] = 0.9             # disjoint -> 0
    np.testing.assert_allclose(iou(a, b, 0.5).numpy(), [4 / 6, 1.0, 0.0])
    assert iou(a[:1], b[:1], 0.7).item() == 0.0


def test_confidence_and_combine_on_hand_computed_cases():
    conf = confidence(torch.tensor([0.9, 0.5]), torch.tensor([0.6, 0.5]))
    np.testing.assert_allclose(conf.numpy(), [0.7, 1.0], rtol=1e-6)
    ssim_values, iou_values = torch.tensor([0.8, 0.5]), torch.tensor([0.5, 1.0])
    np.testing.assert_allclose(combine(ssim_values, iou_values, conf, "product").numpy(), [0.28, 0.5], rtol=1e-6)
    np.testing.assert_allclose(combine(ssim_values, iou_values, conf, "mean").numpy(), [2.0 / 3, 2.5 / 3], rtol=1e-6)


@pytest.mark.parametrize("field, value, message", [
    ("target", "prediction", "target must be one of"), ("combine", "geometric", "combine must be one of"),
    ("class_weights", "inverse", "class_weights must be one of"), ("ssim_window", 10, "odd integer"),
    ("ssim_sigma", 0.0, "ssim_sigma must be a number > 0"), ("iou_threshold", 1.5, r"iou_threshold must be in \(0, 1\]"),
    ("ssim_window", 11.0, "odd integer"), ("ssim_window", "11", "odd integer"), ("ssim_window", 1, "odd integer"),
    ("ssim_k1", -0.01, "ssim_k1 must be a number > 0"), ("ssim_k2", 0, "ssim_k2 must be a number > 0"),
    ("ssim_sigma", "1.5", "ssim_sigma must be a number"), ("iou_threshold", "0.5", "iou_threshold must be in"),
    ("iou_threshold", True, "iou_threshold must be in")])
def test_bad_config_values_are_refused_with_the_field_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        PEConfig(**{field: value})


def test_sp2ps_config_checks_its_ssim_fields_too():
    from pescore_nb.sp2ps import Sp2PSConfig

    with pytest.raises(ValueError, match="Sp2PSConfig.ssim_k2 must be a number > 0"):
        Sp2PSConfig(ssim_k2=-1)


def test_config_round_trips_through_json_and_is_frozen():
    config = PEConfig(target="reference", iou_threshold=0.3, combine="mean", class_weights="macro")
    assert PEConfig.from_json(config.to_json()) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.iou_threshold = 0.9
