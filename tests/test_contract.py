"""The results Dataset as a contract: names that work with xarray, one reader, and no silent wrong
results or data loss (saving, loading, resuming, bad input)."""
import json
import multiprocessing
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import pescore_nb
from pescore_nb import by_class, evaluate, load, save, schema, score
from pescore_nb.store import DONE, SchemaUpgradeWarning
from synthetic import results_dataset
from test_evaluate import MaskedImages, tiny_cnn
from test_scale import KWARGS, masked_images, models

ONE_CAM = dict(layers="7", cams="gradcam", batch_size=4, progress=False)


@pytest.fixture(scope="module")
def small():
    reference, candidates = models()
    return evaluate(reference, candidates, masked_images(), **KWARGS)


# --- 1. Names that work with xarray --------------------------------------------------------------
def test_cam_is_a_dimension_that_sel_selects(small):
    picked = small.sel(cam="layercam")
    assert schema.CAM not in picked.dims and picked[schema.PE].dims == (schema.MODEL, schema.LAYER, schema.IMAGE)
    xr.testing.assert_equal(picked[schema.PE], small[schema.PE].isel(cam=1))


def test_by_class_gives_an_integer_label_dimension_with_class_names(small):
    per_class = by_class(small)
    assert per_class.dims == (schema.MODEL, schema.LAYER, schema.CAM, schema.LABEL)
    assert per_class[schema.LABEL].values.tolist() == [0, 1, 2]
    assert per_class[schema.CLASS_NAME].values.tolist() == ["cat", "dog", "owl"]
    assert float(per_class.sel(label=1, model="c", layer="7", cam="gradcam++")) == pytest.approx(
        float(small.pe.sel(model="c", layer="7", cam="gradcam++").where(small.label == 1).mean()))
    assert schema.SOURCE_INDEX in small.coords and "index" not in small.coords


def test_plain_strings_are_one_layer_and_one_cam():
    reference, candidates = models()
    ds = evaluate(reference, candidates, masked_images(4), **ONE_CAM)
    assert ds[schema.LAYER].values.tolist() == ["7"] and ds[schema.CAM].values.tolist() == ["gradcam"]


@pytest.mark.parametrize("arguments, message", [
    (dict(layers=["7", "7"]), r"layers lists \['7'\] more than once"),
    (dict(cams=["gradcam", "gradcam"]), r"cams lists \['gradcam'\] more than once"),
])
def test_repeated_layers_or_cams_are_refused(arguments, message):
    reference, candidates = models()
    with pytest.raises(ValueError, match=message):
        evaluate(reference, candidates, masked_images(4), **{**ONE_CAM, **arguments})


def test_modules_are_not_shadowed_and_import_loads_no_widgets_or_matplotlib():
    import pescore_nb.evaluation as evaluation_module
    import pescore_nb.trust as trust_module

    assert evaluation_module.__name__ == "pescore_nb.evaluation" and callable(evaluation_module.evaluate)
    assert trust_module.__name__ == "pescore_nb.trust"
    code = ("import sys, pescore_nb; "
            "print(sorted(m for m in ('ipywidgets', 'matplotlib') if m in sys.modules))")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.strip() == "[]"


def test_score_takes_class_weights_without_shadowing():
    ds = results_dataset()
    support, macro = score(ds), score(ds, class_weights="macro")
    assert not np.allclose(support, macro) or ds.label.to_series().value_counts().nunique() == 1
    with pytest.raises(ValueError, match="class_weights must be one of"):
        score(ds, class_weights="inverse")


# --- 1/2. Older files load under today's names ---------------------------------------------------
def test_an_old_schema_file_loads_renamed_with_one_warning(tmp_path, small):
    old = small.rename({schema.CAM: "method", schema.SOURCE_INDEX: "index"}).drop_vars(schema.ROLE)
    old.attrs.pop(schema.SCHEMA_VERSION_ATTRIBUTE)
    old.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load(tmp_path / "old.nc")
    upgrades = [w for w in caught if issubclass(w.category, SchemaUpgradeWarning)]
    assert len(upgrades) == 1 and "method -> cam" in str(upgrades[0].message)
    assert loaded[schema.ROLE].values.tolist() == ["reference", "candidate", "candidate"]
    assert loaded.attrs[schema.SCHEMA_VERSION_ATTRIBUTE] == schema.SCHEMA_VERSION
    xr.testing.assert_allclose(score(loaded), score(small))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # today's files load without a word
        save(small, tmp_path / "new.nc")
        load(tmp_path / "new.nc")


# --- 2. Roles and provenance ---------------------------------------------------------------------
def test_roles_and_provenance_come_from_the_models_metadata():
    reference, candidates = models()
    candidates["c"].pescore_pruning = {schema.PRUNER: "l2", schema.RATIO: 0.3, schema.ROLE: schema.CANDIDATE,
                                       schema.PROVENANCE: {"pruning_seed": 3}}
    candidates["d"].pescore_pruning = {schema.PRUNER: schema.UNPRUNED, schema.RATIO: 0.0, schema.ROLE: schema.CONTROL}
    ds = evaluate(reference, candidates, masked_images(4), **ONE_CAM)
    assert ds[schema.ROLE].values.tolist() == ["reference", "candidate", "control"]
    assert json.loads(str(ds[schema.PROVENANCE].sel(model="c").values)) == {"pruning_seed": 3}
    assert ds.attrs[schema.SCHEMA_VERSION_ATTRIBUTE] == schema.SCHEMA_VERSION
    reordered = ds.isel(model=[2, 1, 0])
    from pescore_nb import structure

    assert structure.reference(reordered) == "reference" and structure.controls(reordered) == ["d"]


# --- 3.1 / 3.2 Saving over a source, atomically, never deleting foreign folders -----------------
@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_saving_a_lazily_loaded_dataset_over_its_own_source_keeps_the_data(tmp_path, small, suffix):
    path = tmp_path / f"a{suffix}"
    save(small, path)
    save(load(path), path, overwrite=True)
    again = load(path, lazy=False)
    assert not np.isnan(again[schema.PE].values).any()
    xr.testing.assert_allclose(again[schema.PE], small[schema.PE])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a{suffix}"]  # no temporary left behind


def test_a_failed_save_leaves_the_old_file_and_no_debris(tmp_path, small):
    path = tmp_path / "a.zarr"
    save(small, path)
    broken = small.assign(bad=((schema.IMAGE,), np.array([object()] * small.sizes[schema.IMAGE])))
    with pytest.raises(Exception):
        save(broken, path, overwrite=True)
    xr.testing.assert_allclose(load(path)[schema.PE], small[schema.PE])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]
    save(small, path, overwrite=True)  # the next save is not blocked


def test_overwrite_never_deletes_a_folder_that_is_not_a_store(tmp_path, small):
    folder = tmp_path / "thesis.zarr"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a pescore_nb store"):
        save(small, folder, overwrite=True)
    assert (folder / "chapter1.tex").read_text() == "precious"


# --- 3.3 Unfinished stores ---------------------------------------------------------------------
def unfinished_store(path):
    """A store whose first batch (3 images) is written and the rest is not: a run killed early."""
    reference, candidates = models()

    class Failing(MaskedImages):
        def __getitem__(self, index):
            if index >= 3 and self.armed:
                raise KeyboardInterrupt("killed")
            return super().__getitem__(index)

    data = masked_images()
    failing = Failing(*data.tensors, data.masks)
    failing.armed = False
    from pescore_nb import evaluation

    arguments = dict(KWARGS)
    original = evaluation._Job.run

    def run_then_die(self, engines, ranges, after_each=lambda: None):
        for count, item in enumerate(original(self, engines, ranges, after_each)):
            if count == 1:
                raise KeyboardInterrupt("killed")
            yield item

    evaluation._Job.run = run_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluate(reference, candidates, failing, store=str(path), **arguments)
    finally:
        evaluation._Job.run = original
    return reference, candidates


def test_an_unfinished_store_is_refused_and_its_finished_part_is_loadable(tmp_path, small):
    path = tmp_path / "run.zarr"
    reference, candidates = unfinished_store(path)
    with pytest.raises(RuntimeError, match=r"1 of 4 batches \(3 of 10 images\).*partial=True"):
        load(path)
    part = load(path, partial=True)
    assert part.sizes[schema.IMAGE] == 3 and DONE not in part
    np.testing.assert_allclose(part[schema.PE].values, small[schema.PE].isel(image=slice(0, 3)).values)
    assert not np.isnan(part[schema.ACCURACY].values).any()
    finished = evaluate(reference, candidates, masked_images(), store=str(path), **KWARGS)  # resumes
    xr.testing.assert_allclose(score(finished), score(small))


# --- 3.4 Changed data is refused ------------------------------------------------------------------
@pytest.mark.parametrize("change, named", [("relabel", "label_digest"), ("image", "image_digest")])
def test_resuming_with_changed_data_is_refused_naming_what_differs(tmp_path, change, named):
    reference, candidates = models()
    path = tmp_path / "run.zarr"
    evaluate(reference, candidates, masked_images(), store=str(path), **KWARGS)
    data = masked_images()
    images, labels = data.tensors
    if change == "relabel":
        labels = (labels + 1) % 3
    else:
        images = images.clone()
        images[7, 0, 0, 0] += 0.5  # not the first image
    with pytest.raises(ValueError, match=named):
        evaluate(reference, candidates, MaskedImages(images, labels, data.masks), store=str(path), **KWARGS)


# --- 3.5 NaN in the scored variable ----------------------------------------------------------------
def test_nan_scores_raise_by_default_and_skipna_renormalises():
    ds = results_dataset(n_images=12)
    holed = ds.assign(pe=ds.pe.where(ds.label != 2))  # class 2 has no finite score at all
    with pytest.raises(ValueError, match=r"holds \d+ NaN values.*skipna=True"):
        score(holed)
    kept = ds.sel(image=ds.label != 2)
    xr.testing.assert_allclose(score(holed, skipna=True), score(kept))
    assert (score(holed, skipna=True) > 0).all()


# --- 3.6 The same model twice; devices that can't give weights back -------------------------------
def test_one_model_passed_twice_is_left_exactly_as_it_was(snapshot):
    model = tiny_cnn()
    model.train()
    model[0].weight.requires_grad_(False)
    before = snapshot(model)
    evaluate(model, {"same": model, "again": model}, masked_images(4), **ONE_CAM)
    before.assert_unchanged()


@pytest.mark.parametrize("device", ["meta", "cuda:7" if not torch.cuda.is_available() else "meta"])
def test_a_device_that_cannot_give_weights_back_is_refused_before_touching_the_model(snapshot, device):
    reference, candidates = models()
    before = snapshot(reference)
    with pytest.raises(ValueError, match="cannot run the models and give their weights back"):
        evaluate(reference, candidates, masked_images(4), device=device, **ONE_CAM)
    before.assert_unchanged()


# --- 3.7 Bad input gets a clear error ---------------------------------------------------------------
class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = tiny_cnn()

    def forward(self, images):
        return self.net(images), images.mean()


class MixedSizes(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.rand(3, 24 if index < 2 else 20, 24), index % 3


def test_a_model_returning_a_tuple_is_named():
    model = TupleModel()
    with pytest.raises(ValueError, match="must return logits"):
        evaluate(model, {"c": TupleModel()}, masked_images(4), layers="net.7", cams="gradcam", progress=False)


def test_images_of_different_sizes_in_one_batch_name_the_fix():
    reference, candidates = models()
    with pytest.raises(ValueError, match=r"different sizes.*Resize"):
        evaluate(reference, candidates, MixedSizes(), **ONE_CAM)


def test_class_names_shorter_than_the_labels_are_refused():
    reference, candidates = models()
    with pytest.raises(ValueError, match=r"Label 2 .* has no class name.*one name per class"):
        evaluate(reference, candidates, masked_images(4), class_names=["cat", "dog"], **ONE_CAM)


def test_negative_labels_are_refused_also_with_reference_targets():
    reference, candidates = models()
    data = masked_images(4)
    images, labels = data.tensors
    from pescore_nb import PEConfig

    with pytest.raises(ValueError, match="labels must be class indices >= 0"):
        evaluate(reference, candidates, TensorDataset(images, labels - 1), config=PEConfig(target="reference"),
                 **ONE_CAM)


# --- 3.8 Two processes creating one store -------------------------------------------------------------
def _create_store(path, queue):
    try:
        reference, candidates = models()
        evaluate(reference, candidates, masked_images(), store=path, **KWARGS)
        queue.put("ok")
    except Exception as error:  # reported to the parent
        queue.put(f"{type(error).__name__}: {error}")


def test_two_processes_creating_one_store_both_finish_and_leave_no_partial_folder(tmp_path, small):
    path = str(tmp_path / "run.zarr")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_create_store, args=(path, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert sorted(queue.get(timeout=5) for _ in workers) == ["ok", "ok"]
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["run.zarr"]
    xr.testing.assert_allclose(score(load(path)), score(small))


# --- 5. Engine edge cases ----------------------------------------------------------------------------
def test_randomcam_is_refused_with_a_store(tmp_path):
    reference, candidates = models()
    with pytest.raises(ValueError, match="randomcam.*resumed store"):
        evaluate(reference, candidates, masked_images(4), store=str(tmp_path / "r.zarr"),
                 **{**ONE_CAM, "cams": "randomcam"})
    assert not (tmp_path / "r.zarr").exists()


def test_fullgrad_says_once_that_it_ignores_the_layer(capsys):
    reference = tiny_cnn()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = pescore_nb.CamEngine(reference, ["3", "7"], "fullgrad")
        engine(masked_images(2).tensors[0], torch.tensor([0, 1]))
        engine(masked_images(2).tensors[0], torch.tensor([0, 1]))
    assert len([w for w in caught if "ignore the requested layers" in str(w.message)]) == 1
    assert "target_layers is ignored" not in capsys.readouterr().out  # the library's per-call print is muted


def test_a_model_whose_weights_are_on_the_meta_device_is_refused_untouched():
    reference, _ = models()
    with torch.device("meta"):
        empty = tiny_cnn()
    with pytest.raises(ValueError, match="weights on the 'meta' device"):
        evaluate(reference, {"empty": empty}, masked_images(4), **ONE_CAM)
    assert all(p.is_meta for p in empty.parameters()) and not reference[0]._forward_hooks


def test_the_html_report_replaces_an_old_one_whole(tmp_path):
    from pescore_nb import html_report

    path = tmp_path / "report.html"
    path.write_text("old")
    html_report.report(results_dataset(n_images=6, size=16, layers=("features.3",)), path, n_resamples=20,
                       heatmap_images=1, overwrite=True)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") or "<html" in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
