"""Sp2PS: exact at identity, equal to a float64 numpy reference, falling as maps drift."""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from pescore_nb.metrics import ssim
from pescore_nb.sp2ps import (CONFIG_ATTRIBUTE, SPECTRA, SPECTRAL_SIMILARITIES, Sp2PSConfig, Sp2PSReference, sp2ps,
                              spectral_similarity, spectrum)

CONFIGS = [Sp2PSConfig(spectrum=s, spectral_similarity=m) for s in SPECTRA for m in SPECTRAL_SIMILARITIES]


def blob(size=32, centre=(16.0, 16.0), width=4.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    return torch.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * width ** 2))


def random_maps(shape, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator)


def reference_sp2ps(a: np.ndarray, b: np.ndarray, config: Sp2PSConfig) -> float:
    """One pair, float64 numpy and skimage: the definition of the module docstring."""
    def spectrum(m):
        magnitude = np.abs(np.fft.fftshift(np.fft.fft2(m.astype(np.float64))))
        return np.log1p(magnitude) / np.log1p(m.size) if config.spectrum == "log" else magnitude / m.size

    def ssim(x, y):
        value = structural_similarity(x, y, gaussian_weights=True, sigma=config.ssim_sigma, win_size=config.ssim_window,
                                      use_sample_covariance=False, data_range=1.0)
        return min(max(value, 0.0), 1.0)

    sa, sb = spectrum(a), spectrum(b)
    if config.spectral_similarity == "ssim":
        spectral = ssim(sa, sb)
    else:
        spectral = float((sa * sb).sum() / np.sqrt((sa ** 2).sum() * (sb ** 2).sum()))
    spatial = ssim(a.astype(np.float64), b.astype(np.float64))
    return 2 * spatial * spectral / (spatial + spectral)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.spectrum}-{c.spectral_similarity}")
def test_a_map_with_itself_scores_exactly_one(config):
    maps = random_maps((2, 3, 24, 24))
    assert torch.equal(sp2ps(maps, maps, config), torch.ones(2, 3))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.spectrum}-{c.spectral_similarity}")
def test_batched_torch_matches_a_float64_numpy_loop(config):
    ref = blob()[None].repeat(4, 1, 1) * 0.8 + 0.2 * random_maps((4, 32, 32), seed=1)
    cand = torch.stack([blob(centre=(16, 16 + k), width=4 + k) for k in range(4)]) * 0.9 + 0.1 * random_maps(
        (4, 32, 32), seed=2)
    got = sp2ps(ref, cand, config)
    expected = [reference_sp2ps(r.numpy(), c.numpy(), config) for r, c in zip(ref, cand)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [(32, 32), (15, 17), (16, 13), (224, 224)])
@pytest.mark.parametrize("kind", SPECTRA)
def test_the_float32_half_spectrum_unfolds_to_numpys_float64_centred_spectrum(kind, size):
    maps = random_maps((3, *size), seed=4)
    magnitude = np.abs(np.fft.fftshift(np.fft.fft2(maps.double().numpy()), axes=(-2, -1)))
    expected = np.log1p(magnitude) / np.log1p(size[0] * size[1]) if kind == "log" else magnitude / (size[0] * size[1])
    got = spectrum(maps, kind)
    assert got.dtype == torch.float32 and got.shape == maps.shape
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4 if kind == "log" else 1e-6)


@pytest.mark.parametrize("config", CONFIGS + [Sp2PSConfig(ssim_window=7, ssim_sigma=0.9)],  # skimage: 7 wide
                         ids=lambda c: f"{c.spectrum}-{c.spectral_similarity}-{c.ssim_window}")
def test_a_kept_reference_scores_many_candidates_as_sp2ps_does(config):
    ref = blob()[None].repeat(2, 3, 1, 1) * 0.8 + 0.2 * random_maps((2, 3, 32, 32), seed=5)
    reference = Sp2PSReference(ref, config)
    for seed in (6, 7):
        cand = 0.5 * ref + 0.5 * random_maps(ref.shape, seed=seed)
        assert torch.equal(reference.compare(cand), sp2ps(ref, cand, config))
        assert torch.equal(reference.spectral_similarity(cand), spectral_similarity(ref, cand, config))
        spatial = ssim(ref, cand, config)
        assert torch.equal(reference.compare(cand, spatial=spatial), reference.compare(cand))
        expected = [reference_sp2ps(r.numpy(), c.numpy(), config)
                    for r, c in zip(ref.flatten(0, 1), cand.flatten(0, 1))]
        np.testing.assert_allclose(reference.compare(cand).flatten().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(reference.compare(ref.clone()), torch.ones(2, 3))


def _strictly_falling(values):
    return all(later < earlier for earlier, later in zip(values, values[1:]))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.spectrum}-{c.spectral_similarity}")
def test_falls_as_the_blob_moves_away(config):
    reference = blob()
    values = [float(sp2ps(reference, blob(centre=(16, 16 + shift)), config)) for shift in (0, 1, 2, 4, 8)]
    assert values[0] == 1.0 and _strictly_falling(values)


def test_default_falls_as_the_blob_widens_and_as_noise_is_mixed_in():
    reference, noise = blob(64, (32, 32)), random_maps((64, 64), seed=3)
    widened = [float(sp2ps(reference, blob(64, (32, 32), width))) for width in (4, 5, 6, 8, 12, 16)]
    noisy = [float(sp2ps(reference, (1 - t) * reference + t * noise)) for t in (0, 0.1, 0.2, 0.4, 0.7)]
    assert _strictly_falling(widened) and _strictly_falling(noisy)
    spectral = [float(spectral_similarity(reference, blob(64, (32, 32), width))) for width in (4, 6, 8, 12, 16)]
    assert _strictly_falling(spectral)


def test_the_spectrum_ignores_where_the_attention_is():
    reference = blob()
    rolled = torch.roll(reference, shifts=(5, -3), dims=(-2, -1))  # a circular shift keeps |F| exactly
    assert float(spectral_similarity(reference, rolled)) == pytest.approx(1.0, abs=1e-12)
    assert float(sp2ps(reference, rolled)) < 0.5


def test_degenerate_maps():
    zeros = torch.zeros(32, 32)
    assert float(sp2ps(zeros, zeros)) == 1.0
    assert float(spectral_similarity(zeros, blob(), Sp2PSConfig(spectral_similarity="cosine"))) == 0.0
    assert 0.0 <= float(sp2ps(zeros, blob())) < 0.3


def test_keeps_the_dtype_and_leading_shape():
    maps = random_maps((5, 2, 16, 16))
    result = sp2ps(maps, maps.flip(-1))
    assert result.shape == (5, 2) and result.dtype == torch.float32
    assert ((result >= 0) & (result <= 1)).all()


def test_config_round_trips_through_json_and_attrs():
    config = Sp2PSConfig(ssim_window=7, spectrum="log", spectral_similarity="cosine")
    assert Sp2PSConfig.from_json(config.to_json()) == config
    assert Sp2PSConfig.from_attrs({CONFIG_ATTRIBUTE: config.to_json()}) == config
    with pytest.raises(KeyError, match=CONFIG_ATTRIBUTE):
        Sp2PSConfig.from_attrs({})


@pytest.mark.parametrize("fields, message", [({"spectrum": "phase"}, "spectrum must be one of"),
                                             ({"spectral_similarity": "l2"}, "spectral_similarity must be"),
                                             ({"ssim_window": 4}, "odd integer")])
def test_invalid_config_says_what_is_allowed(fields, message):
    with pytest.raises(ValueError, match=message):
        Sp2PSConfig(**fields)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        spectral_similarity(torch.zeros(16, 16), torch.zeros(16, 17))
