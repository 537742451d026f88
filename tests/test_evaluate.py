"""evaluate -> Dataset -> score/by_class/save/load, on tiny models and hand-made data."""
import copy

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pescore_nb
from pescore_nb import PEConfig, by_class, evaluate, load, save, schema, score
from pescore_nb.cam import CamEngine
from pescore_nb.metrics import combine, confidence, iou, ssim
from pescore_nb.sp2ps import Sp2PSConfig, sp2ps


def tiny_cnn(classes: int = 3, width: int = 8, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)).eval()


class MaskedImages(TensorDataset):
    """Images with labels and ground-truth object masks, as pescore_nb.data provides them."""

    def __init__(self, images, labels, masks):
        super().__init__(images, labels)
        self.masks = masks
        self.classes = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(10, 3, 24, 24, generator=generator)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 2])
    masks = torch.zeros(10, 24, 24, dtype=torch.bool)
    masks[:, 6:18, 6:18] = True
    return MaskedImages(images, labels, masks)


LAYERS = ["3", "7"]


@pytest.fixture(scope="module")
def results(data):
    reference = tiny_cnn()
    pruned = tiny_cnn(seed=1)
    pruned.pescore_pruning = {"pruner": "l2", "ratio": 0.3, "params": 123, "macs": 4567}
    return evaluate(reference, {"l2@0.30": pruned, "other": tiny_cnn(seed=2)}, data, layers=LAYERS,
                    cams=["gradcam++", "layercam"], batch_size=4, progress=False), reference, pruned


def test_the_dataset_has_the_schema_of_pescore_md(results, data):
    ds, _, _ = results
    assert ds[schema.HEATMAP].dims == schema.HEATMAP_DIMS and ds[schema.HEATMAP].dtype == np.float32
    for name in (schema.SSIM, schema.IOU, schema.CONF, schema.PE, schema.DEGENERATE, schema.ENERGY_IN_MASK):
        assert ds[name].dims == schema.SCORE_DIMS
    assert ds[schema.PROB].dims == ds[schema.PRED].dims == schema.OUTPUT_DIMS
    assert list(ds[schema.MODEL].values) == ["reference", "l2@0.30", "other"]
    assert ds.sizes == {"model": 3, "layer": 2, "cam": 2, "image": 10, "y": 24, "x": 24, "channel": 3}
    assert list(ds[schema.RATIO].values[:2]) == [0.0, 0.3] and np.isnan(ds[schema.RATIO].values[2])
    assert list(ds[schema.PRUNER].values) == ["none", "l2", "unknown"]
    assert ds[schema.PARAMS].values[1] == 123 and ds[schema.MACS].values[1] == 4567
    assert ds[schema.PARAMS].values[0] == sum(p.numel() for p in tiny_cnn().parameters())
    assert list(ds[schema.CLASS_NAME].values[:3]) == ["cat", "dog", "owl"]
    np.testing.assert_array_equal(ds[schema.LABEL].values, data.tensors[1].numpy())
    np.testing.assert_array_equal(ds[schema.SOURCE_INDEX].values, np.arange(10))
    assert PEConfig.from_attrs(ds.attrs) == PEConfig()


def test_heatmaps_probabilities_and_scores_equal_a_direct_recomputation(results, data):
    ds, reference, pruned = results
    images, labels = data.tensors
    expected_ref = CamEngine(reference, LAYERS, ["gradcam++", "layercam"])(images, labels)
    expected_cand = CamEngine(pruned, LAYERS, ["gradcam++", "layercam"])(images, labels)
    np.testing.assert_allclose(ds.heatmap.sel(model="reference").values, expected_ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(ds.heatmap.sel(model="l2@0.30").values, expected_cand.numpy(), atol=1e-6)
    with torch.no_grad():
        ref_prob = reference(images).softmax(1).gather(1, labels[:, None])[:, 0]
        cand_logits = pruned(images)
    cand_prob = cand_logits.softmax(1).gather(1, labels[:, None])[:, 0]
    np.testing.assert_allclose(ds.prob.sel(model="l2@0.30").values, cand_prob.numpy(), atol=1e-6)
    np.testing.assert_array_equal(ds.pred.sel(model="l2@0.30").values, cand_logits.argmax(1).numpy())
    assert ds.accuracy.sel(model="l2@0.30") == pytest.approx((cand_logits.argmax(1) == labels).float().mean().item())
    expected_ssim = ssim(expected_ref, expected_cand)
    expected_iou = iou(expected_ref, expected_cand, 0.5)
    expected_conf = confidence(ref_prob, cand_prob)
    np.testing.assert_allclose(ds.ssim.sel(model="l2@0.30").values, expected_ssim.numpy(), atol=1e-5)
    np.testing.assert_allclose(ds.iou.sel(model="l2@0.30").values, expected_iou.numpy(), atol=1e-6)
    np.testing.assert_allclose(ds.pe.sel(model="l2@0.30").values,
                               combine(expected_ssim, expected_iou, expected_conf).numpy(), atol=1e-5)
    assert schema.SP2PS not in ds and Sp2PSConfig.attribute not in ds.attrs  # Sp2PS is opt-in


@pytest.mark.parametrize("sp2ps_config", [Sp2PSConfig(), Sp2PSConfig(ssim_window=7, spectrum="log"),
                                          Sp2PSConfig(spectral_similarity="cosine")],
                         ids=["default", "own-ssim-log", "cosine"])
def test_sp2ps_when_asked_equals_the_function_on_the_maps_and_leaves_the_other_scores(results, data,
                                                                                       sp2ps_config):
    ds, reference, pruned = results
    candidates = {"l2@0.30": pruned, "other": tiny_cnn(seed=2)}
    with_sp2ps = evaluate(reference, candidates, data, layers=LAYERS, cams=["gradcam++", "layercam"], batch_size=4,
                          sp2ps_config=sp2ps_config, progress=False)
    images, labels = data.tensors
    expected_ref = CamEngine(reference, LAYERS, ["gradcam++", "layercam"])(images, labels)
    expected_cand = CamEngine(pruned, LAYERS, ["gradcam++", "layercam"])(images, labels)
    np.testing.assert_allclose(with_sp2ps.sp2ps.sel(model="l2@0.30").values,
                               sp2ps(expected_ref, expected_cand, sp2ps_config).numpy(), atol=1e-5)
    assert with_sp2ps[schema.SP2PS].dims == schema.SCORE_DIMS
    assert (with_sp2ps.sp2ps.sel(model="reference").values == 1.0).all()
    assert Sp2PSConfig.from_attrs(with_sp2ps.attrs) == sp2ps_config
    xr.testing.assert_identical(with_sp2ps.drop_vars(schema.SP2PS).drop_attrs(), ds.drop_attrs())


def test_energy_in_mask_on_a_hand_built_case(data):
    """A model whose CAM is its input's red channel: the energy in the mask is known exactly."""
    class RedChannel(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Identity()
            self.head = nn.Linear(1, 3)

        def forward(self, x):
            maps = self.features(x[:, :1])
            return self.head(maps.mean(dim=(2, 3)))

    images = torch.zeros(2, 3, 24, 24)
    images[0, 0, 6:18, 6:18] = 1.0                  # all energy inside the mask
    images[1, 0, 6:18, 6:18] = 1.0
    images[1, 0, 0:12, 0:12] = 1.0                  # plus 144 - 36 = 108 pixels outside
    masks = torch.zeros(2, 24, 24, dtype=torch.bool)
    masks[:, 6:18, 6:18] = True
    model = RedChannel()
    with torch.no_grad():
        model.head.weight.fill_(1.0)
    ds = evaluate(model, {}, MaskedImages(images, torch.tensor([0, 1]), masks), layers=["features"],
                  cams=["layercam"], progress=False)
    np.testing.assert_allclose(ds.energy_in_mask.values.ravel(), [1.0, 144 / 252], atol=1e-4)


def test_a_subset_keeps_the_class_names_and_the_masks_of_its_images(results, data):
    ds, reference, pruned = results
    candidates = {"l2@0.30": pruned, "other": tiny_cnn(seed=2)}
    subset = evaluate(reference, candidates, torch.utils.data.Subset(data, [7, 2, 5]), layers=LAYERS,
                      cams=["gradcam++", "layercam"], progress=False)
    assert list(subset.class_name.values) == ["cat", "owl", "owl"]
    np.testing.assert_allclose(subset.energy_in_mask.values, ds.energy_in_mask.isel(image=[7, 2, 5]).values,
                               atol=1e-6)


def test_the_results_name_the_data_set_and_keep_the_name_on_disk(tmp_path):
    from pescore_nb import data as datasets

    shapes = datasets.shapes(6, size=24, split="test")
    subset = torch.utils.data.Subset(shapes, [4, 1, 0])
    ds = evaluate(tiny_cnn(classes=6), {"other": tiny_cnn(classes=6, seed=2)}, subset, layers=["3"], progress=False)
    assert ds.attrs["dataset_name"] == "shapes (synthetic, test split)"
    save(ds, tmp_path / "named.nc")
    assert load(tmp_path / "named.nc").attrs["dataset_name"] == "shapes (synthetic, test split)"
    unnamed = evaluate(tiny_cnn(), {"other": tiny_cnn(seed=2)}, TensorDataset(torch.rand(3, 3, 24, 24),
                       torch.tensor([0, 1, 2])), layers=["3"], progress=False)
    assert "dataset_name" not in unnamed.attrs


def test_a_copy_of_the_reference_scores_exactly_one(data):
    reference = tiny_cnn()
    ds = evaluate(reference, {"copy": copy.deepcopy(reference)}, data, layers=LAYERS,
                  cams=["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam"],
                  batch_size=3, sp2ps_config=Sp2PSConfig(), progress=False)
    assert (score(ds).values == 1.0).all()
    assert (ds.pe.values == 1.0).all() and (ds.sp2ps.values == 1.0).all()


def test_score_weights_classes_by_support_or_macro(results):
    ds, _, _ = results
    pe = ds.pe.sel({"model": "l2@0.30", "layer": "7", "cam": "gradcam++"}).values
    labels = ds.label.values
    class_means = [pe[labels == k].mean() for k in range(3)]
    support = sum(m * (labels == k).sum() / len(labels) for k, m in enumerate(class_means))
    assert score(ds).sel({"model": "l2@0.30", "layer": "7", "cam": "gradcam++"}) == pytest.approx(support, abs=1e-6)
    assert score(ds, class_weights="macro").sel({"model": "l2@0.30", "layer": "7", "cam": "gradcam++"}) == pytest.approx(
        np.mean(class_means), abs=1e-6)
    per_class = by_class(ds).sel({"model": "l2@0.30", "layer": "7", "cam": "gradcam++"})
    np.testing.assert_allclose(per_class.values, class_means, atol=1e-6)
    assert list(per_class.class_name.values) == ["cat", "dog", "owl"]


def test_target_can_be_the_reference_prediction(data):
    reference, candidate = tiny_cnn(), tiny_cnn(seed=3)
    ds = evaluate(reference, {"c": candidate}, data, layers=["7"], cams=["gradcam"],
                  config=PEConfig(target="reference"), progress=False)
    images, _ = data.tensors
    with torch.no_grad():
        predicted = reference(images).argmax(1)
    expected = CamEngine(candidate, ["7"], ["gradcam"])(images, predicted)
    np.testing.assert_allclose(ds.heatmap.sel(model="c").values[0, 0], expected[0, 0].numpy(), atol=1e-6)


def test_scores_warn_about_degenerate_maps_instead_of_hiding_them(results):
    ds, _, _ = results
    flagged = ds.assign(degenerate=ds.degenerate.copy(data=np.zeros(ds.degenerate.shape, bool)))
    flagged.degenerate[1, 0, 0, 2] = True
    with pytest.warns(pescore_nb.scores.DegenerateMapWarning, match="1 of 120 maps are degenerate"):
        score(flagged)


def test_save_and_load_round_trip_without_loss(results, tmp_path):
    ds, _, _ = results
    for name in ("results.nc", "results.zarr"):
        path = save(ds, tmp_path / name)
        loaded = load(path)
        assert loaded.heatmap.chunks is not None  # lazy, dask-backed
        xr.testing.assert_identical(loaded.load(), ds)
        assert PEConfig.from_attrs(loaded.attrs) == PEConfig()
        xr.testing.assert_allclose(score(loaded).load(), score(ds))  # scores read lazy Datasets too


def test_an_existing_output_path_is_never_overwritten(results, tmp_path):
    ds, _, _ = results
    path = tmp_path / "results.nc"
    path.write_bytes(b"earlier results")
    with pytest.raises(FileExistsError, match="never overwrites.*overwrite=True"):
        save(ds, path)
    assert path.read_bytes() == b"earlier results"
    save(ds, path, overwrite=True)
    xr.testing.assert_identical(load(path, lazy=False), ds)


def test_public_names_are_exported():
    for name in ("CamEngine", "evaluate", "score", "by_class", "save", "load", "PEConfig"):
        assert hasattr(pescore_nb, name)


def models_for_errors():
    return tiny_cnn(), tiny_cnn(seed=1).train()


BAD_EVALUATIONS = [
    (lambda ref, cand, data: (ref, {"c": cand}, data, dict(layers=["12"])), ValueError,
     r"Layer '12' is not in Sequential. Closest names"),
    (lambda ref, cand, data: (ref, {"c": cand}, data, dict(layers=["9"])), ValueError,
     r"Layer '9' gives \(1, 8\)"),
    (lambda ref, cand, data: (ref, {"c": tiny_cnn(classes=5)}, data, dict(layers=["7"])), ValueError,
     r"Candidates must have the reference's 3 classes, but \{'c': 5\} differ"),
    (lambda ref, cand, data: (ref, {"c": cand}, TensorDataset(torch.rand(0, 3, 8, 8), torch.zeros(0)),
                              dict(layers=["7"])), ValueError, "The dataset is empty"),
    (lambda ref, cand, data: (ref, {"c": cand}, DataLoader(data, shuffle=True), dict(layers=["7"])), ValueError,
     "must iterate in order"),
    (lambda ref, cand, data: (ref, {"c": cand}, data, dict(layers=["7"], cams=["gradcan"])), ValueError,
     r"Unknown CAM method\(s\) \['gradcan'\]"),
    (lambda ref, cand, data: (ref, {"c": cand}, TensorDataset(torch.full((2, 3, 8, 8), float("inf")),
                                                                 torch.zeros(2, dtype=torch.long)),
                              dict(layers=["7"])), ValueError, "NaN or inf"),
    (lambda ref, cand, data: (ref, {"c": cand}, TensorDataset(torch.rand(2, 8, 8), torch.zeros(2, dtype=torch.long)),
                              dict(layers=["7"])), ValueError, r"images must be \(N, C, H, W\)"),
    (lambda ref, cand, data: (ref, {"c": cand}, TensorDataset(torch.rand(2, 3, 16, 16), torch.tensor([0, 7])),
                              dict(layers=["7"])), ValueError, r"class indices in \[0, 3\)"),
    (lambda ref, cand, data: (ref, {"reference": cand}, data, dict(layers=["7"])), ValueError,
     "names the reference model"),
    (lambda ref, cand, data: (ref, {"c": cand}, [(torch.rand(3, 24, 24), 0), (torch.rand(3, 32, 32), 1)],
                              dict(layers=["7"], batch_size=1)), ValueError,
     r"All images must have one size: got \(3, 32, 32\) at image 1, but the first is \(3, 24, 24\)"),
]


@pytest.mark.parametrize("make_call, error, message", BAD_EVALUATIONS)
def test_bad_evaluations_give_a_clear_error_and_leave_the_models_unchanged(make_call, error, message, data,
                                                                           snapshot):
    reference, candidate = models_for_errors()
    saved = [snapshot(reference), snapshot(candidate)]
    reference_arg, candidates, dataset, kwargs = make_call(reference, candidate, data)
    with pytest.raises(error, match=message):
        evaluate(reference_arg, candidates, dataset, progress=False, **kwargs)
    for model_state in saved:
        model_state.assert_unchanged()
