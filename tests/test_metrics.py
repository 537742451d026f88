"""The PE-score terms against independent references: scikit-image's SSIM and hand-computed cases."""
import dataclasses

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from pescore_nb import PEConfig
from pescore_nb.metrics import IoUReference, SSIMReference, combine, confidence, gaussian_window, iou, ssim


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


def cam_like_maps(count: int, size: int = 224, low: int = 14, seed: int = 0) -> torch.Tensor:
    """Maps ``(count, size, size)`` in [0, 1] as CAMs are: a bilinear upsample of a small map, min-max scaled."""
    generator = torch.Generator().manual_seed(seed)
    small = torch.rand(count, 1, low, low, generator=generator) ** 3
    maps = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    maps -= maps.amin(dim=(1, 2), keepdim=True)
    return maps / maps.amax(dim=(1, 2), keepdim=True)


def dense_float64_ssim(a: torch.Tensor, b: torch.Tensor, config: PEConfig = PEConfig()) -> torch.Tensor:
    """SSIM by its formula in float64, the blur as one dense band-matrix product per axis."""
    window = gaussian_window(config.ssim_window, config.ssim_sigma)

    def band(length):
        rows = torch.arange(length - len(window) + 1)[:, None]
        matrix = torch.zeros(length - len(window) + 1, length, dtype=torch.float64)
        matrix[rows, rows + torch.arange(len(window))] = window
        return matrix

    rows, cols = band(a.shape[-2]), band(a.shape[-1])
    a, b = a.double(), b.double()
    mu_a, mu_b, e_aa, e_bb, e_ab = (rows @ m @ cols.T for m in (a, b, a * a, b * b, a * b))
    c1, c2 = config.ssim_k1 ** 2, config.ssim_k2 ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * (e_ab - mu_a * mu_b) + c2)) / (
        (mu_a ** 2 + mu_b ** 2 + c1) * (e_aa - mu_a ** 2 + e_bb - mu_b ** 2 + c2))
    return ssim_map.mean(dim=(-2, -1)).clamp(0, 1)


@pytest.mark.parametrize("size", [(224, 224), (45, 37), (11, 70)])
def test_ssim_reference_compares_many_candidates_as_ssim_and_as_float64_and_skimage(size):
    """The blur's blocks of 32 output pixels: 214 outputs (7 blocks, the last short), 35 x 27, a one-pixel-high map."""
    ref = cam_like_maps(6, low=7, seed=0)
    ref = torch.nn.functional.interpolate(ref[:, None], size=size, mode="bilinear")[:, 0].reshape(2, 3, *size)
    reference = SSIMReference(ref)
    for seed in (1, 2, 3):
        cand = 0.6 * ref + 0.4 * torch.rand(ref.shape, generator=torch.Generator().manual_seed(seed))
        values = reference.compare(cand)
        assert values.shape == (2, 3) and values.dtype == torch.float32
        assert torch.equal(values, ssim(ref, cand))
        np.testing.assert_allclose(values.numpy(), dense_float64_ssim(ref, cand).numpy(), atol=1e-5)
        expected = [np.clip(skimage_ssim(a.double().numpy(), b.double().numpy()), 0, 1)
                    for a, b in zip(ref.flatten(0, 1), cand.flatten(0, 1))]
        np.testing.assert_allclose(values.flatten().numpy(), expected, atol=1e-4)


def test_ssim_reference_keeps_the_moments_of_its_maps():
    maps = cam_like_maps(4, size=64)
    reference = SSIMReference(maps, PEConfig(ssim_window=7, ssim_sigma=1.0))
    assert reference.mean.shape == reference.variance.shape == reference.mean_squared.shape == (4, 58, 58)
    assert torch.equal(reference.mean_squared, reference.mean * reference.mean)
    window = gaussian_window(7, 1.0)
    kernel = (window[:, None] * window)[None, None]  # the 2-D Gaussian, 7 x 7, float64
    expected_mean = torch.nn.functional.conv2d(maps[:, None].double(), kernel)[:, 0]
    expected_variance = torch.nn.functional.conv2d(maps[:, None].double() ** 2, kernel)[:, 0] - expected_mean ** 2
    np.testing.assert_allclose(reference.mean.numpy(), expected_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(reference.variance.numpy(), expected_variance.numpy(), atol=1e-6)


def test_a_copy_of_the_reference_maps_scores_exactly_one_through_the_reference():
    maps = cam_like_maps(2 * 16, seed=4).reshape(2, 1, 16, 224, 224)
    assert torch.equal(SSIMReference(maps).compare(maps.clone()), torch.ones(2, 1, 16))
    assert torch.equal(IoUReference(maps).compare(maps.clone()), torch.ones(2, 1, 16))


def test_iou_reference_equals_iou_by_its_definition():
    ref, cand = cam_like_maps(8, size=64, seed=5), cam_like_maps(8, size=64, seed=6)
    cand[0] = 0.0                                               # an empty candidate mask
    ref[1] = cand[1] = 0.0                                      # both empty: 1
    reference = IoUReference(ref, 0.4)
    masks_a, masks_b = ref >= 0.4, cand >= 0.4
    expected = [1.0 if not (a | b).any() else float((a & b).sum() / (a | b).sum()) for a, b in zip(masks_a, masks_b)]
    np.testing.assert_allclose(reference.compare(cand).numpy(), expected, rtol=1e-6)
    assert torch.equal(reference.compare(cand), iou(ref, cand, 0.4))
    assert reference.compare(cand)[1] == 1.0 and reference.compare(cand)[0] == 0.0


def test_references_refuse_candidates_of_another_shape():
    with pytest.raises(ValueError, match="one shape"):
        SSIMReference(torch.rand(2, 16, 16)).compare(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="one shape"):
        IoUReference(torch.rand(2, 16, 16)).compare(torch.rand(2, 16, 15))


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
