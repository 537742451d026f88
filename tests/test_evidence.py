"""Never a verdict without evidence, never a silently wrong number, never a lost file."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.utils.data import TensorDataset

import pescore_nb as pe
from pescore_nb import schema, structure, trust
from pescore_nb.digests import TRAINING_HASHES, image_hashes
from pescore_nb.metrics import PEConfig
from pescore_nb.scores import DegenerateMapWarning
from synthetic import results_dataset

CONFIG = PEConfig(ssim_window=5)


def pointwise_net(seed: int, pruner: str | None = None, ratio: float = 0.0, role: str = schema.CANDIDATE,
                  softmax: bool = False) -> nn.Module:
    """A 1x1 convolution, ReLU, global pooling, a linear head over 3 classes (softmax at the end if asked)."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)]
    model = nn.Sequential(*layers, *([nn.Softmax(dim=1)] if softmax else [])).eval()
    if pruner is not None:
        setattr(model, schema.PRUNING_ATTRIBUTE, {"pruner": pruner, "ratio": ratio, "role": role, "seed": 0})
    return model


def images(count: int = 12, constant: bool = False, seed: int = 0, size: int = 8) -> TensorDataset:
    """``count`` images (3, size, size), labels 0, 1, 2, ...; ``constant``: one colour per image (no spatial signal)."""
    generator = torch.Generator().manual_seed(seed)
    pictures = torch.rand(count, 3, 1, 1, generator=generator).expand(count, 3, size, size).clone() if constant \
        else torch.rand(count, 3, size, size, generator=generator)
    return TensorDataset(pictures, torch.arange(count) % 3)


def evaluated(data, **kwargs) -> xr.Dataset:
    candidates = {"noise@0.50": pointwise_net(1, "noise", 0.5),
                  schema.CONTROL_FINETUNE: pointwise_net(2, schema.UNPRUNED, 0.0, schema.CONTROL)}
    return pe.evaluate(pointwise_net(0), candidates, data, layers="1", cams="gradcam", config=CONFIG,
                       progress=False, **kwargs)


def test_degenerate_maps_give_no_verdict_and_say_so_everywhere():
    with pytest.warns(DegenerateMapWarning, match="per model: reference 12 of 12, noise@0.50 12 of 12, "
                                                  "control:finetune 12 of 12"):
        ds = evaluated(images(12, constant=True))
    verdict = trust.assess(ds, min_images_per_class=4).squeeze(["layer", "cam"])
    assert verdict["verdict"].sel(model="noise@0.50").item() == "not assessable"
    assert "100% of its paired maps are degenerate" in verdict["reason"].sel(model="noise@0.50").item()
    assert not bool(verdict["trustworthy"].sel(model="noise@0.50"))
    row = pe.recommend(ds, min_images_per_class=4).iloc[0]
    assert (row.model, row.ratio, row.fails_on) == (None, 0.0, "not assessable")
    assert not row.layer_usable
    checks = trust.layer_checks(ds).squeeze()
    assert "reference's maps are degenerate" in checks["why"].item() and float(checks["degenerate_share"]) == 1.0
    absolute = trust.assess(ds.drop_sel(model=schema.CONTROL_FINETUNE)).squeeze()
    assert absolute["verdict"].sel(model="noise@0.50").item() == "not assessable"


def test_a_few_degenerate_maps_below_the_share_still_allow_a_verdict():
    ds = results_dataset(n_images=30, layers=("features.3",), controls={schema.CONTROL_FINETUNE: 0.05})
    flags = ds[schema.DEGENERATE].values.copy()
    flags[ds[schema.MODEL].values.tolist().index("l2@0.30"), ..., :2] = True
    flags[ds[schema.MODEL].values.tolist().index(schema.CONTROL_FINETUNE), ..., 2] = True  # 3 of 30 = 10 %: allowed
    verdicts = trust.assess(ds.assign({schema.DEGENERATE: (schema.SCORE_DIMS, flags)})).squeeze(["layer", "cam"])
    assert verdicts["verdict"].sel(model="l2@0.30").item() in ("trusted", "not trusted")
    flags[ds[schema.MODEL].values.tolist().index(schema.CONTROL_FINETUNE), ..., 3] = True  # 4 of 30 in either: not
    verdicts = trust.assess(ds.assign({schema.DEGENERATE: (schema.SCORE_DIMS, flags)})).squeeze(["layer", "cam"])
    assert verdicts["reason"].sel(model="l2@0.30").item().startswith("13% of its paired maps are degenerate")


def test_a_model_that_returns_probabilities_is_refused_under_auto_and_read_as_is_when_said(snapshot):
    model = pointwise_net(3, softmax=True)
    before = snapshot(model)
    with pytest.raises(ValueError, match="returns probabilities .* Remove the final softmax .* outputs='probabilities'"):
        pe.evaluate(pointwise_net(0), {"softmaxed": model}, images(6), layers="1", cams="gradcam", config=CONFIG,
                    progress=False)
    before.assert_unchanged()
    ds = pe.evaluate(pointwise_net(0, softmax=True), {"softmaxed": model}, images(6), layers="1", cams="gradcam",
                     config=CONFIG, progress=False, outputs="probabilities")
    pictures, labels = images(6).tensors
    with torch.no_grad():
        expected = model(pictures).gather(1, labels[:, None])[:, 0].numpy()
    assert ds[schema.PROB].sel(model="softmaxed").values == pytest.approx(expected, abs=1e-6)  # no second softmax
    assert ds.attrs["outputs"] == "probabilities"


def test_outputs_that_merely_lie_in_zero_one_only_warn():
    sigmoid = nn.Sequential(pointwise_net(4), nn.Sigmoid())
    with pytest.warns(UserWarning, match="sigmoid model's outputs all lie in \\[0, 1\\]"):
        pe.evaluate(nn.Sequential(pointwise_net(0), nn.Identity()), {"sigmoid": sigmoid}, images(6), layers="0.1",
                    cams="gradcam", config=CONFIG, progress=False)


def test_images_a_model_was_tuned_on_are_refused_unless_allowed():
    data = images(12)
    candidate = pointwise_net(1, "noise", 0.5)
    setattr(candidate, TRAINING_HASHES, image_hashes(data.tensors[0][[1, 5, 7]]))
    with pytest.raises(ValueError, match="noise@0.50: 3 of 12\\).* allow_overlap=True"):
        pe.evaluate(pointwise_net(0), {"noise@0.50": candidate}, data, layers="1", cams="gradcam", config=CONFIG,
                    progress=False)
    ds = pe.evaluate(pointwise_net(0), {"noise@0.50": candidate}, data, layers="1", cams="gradcam", config=CONFIG,
                     progress=False, allow_overlap=True)
    assert ds.attrs["allow_overlap"] == 1 and json.loads(ds.attrs["training_overlaps"]) == {"noise@0.50": 3}


def test_a_control_evaluated_on_other_images_is_never_paired_with_the_candidates():
    ours, theirs = evaluated(images(30, seed=0)), evaluated(images(30, seed=1))
    mixed = xr.concat([ours.drop_sel(model=schema.CONTROL_FINETUNE), theirs.sel(model=[schema.CONTROL_FINETUNE])],
                      dim=schema.MODEL, data_vars="minimal", coords="minimal", compat="override")
    with pytest.raises(ValueError, match="\\['control:finetune'\\] were evaluated on other images"):
        trust.assess(mixed)


@pytest.mark.parametrize("edit, message", [
    (lambda ds: ds.drop_vars(schema.ROLE), "has no 'role' coordinate, which its schema \\(version 3\\) requires"),
    (lambda ds: ds.assign_coords(role=("model", ["reference", "candidate", "mystery", "candidate", "candidate"])),
     "Unknown roles \\{'l2@0.60': 'mystery'\\}"),
    (lambda ds: ds.assign(pe=ds.pe.where(ds.model != "l2@0.30", 5.0)), "ds\\['pe'\\] of \\['l2@0.30'\\] lies outside"),
    (lambda ds: ds.assign_coords(accuracy=("model", [1.0, np.nan, 0.9, 0.9, 0.9])), "accuracy of \\['l2@0.30'\\] is NaN"),
    (lambda ds: ds.assign(pe=ds.pe.astype(str)), "holds <U32 values, not numbers"),
    (lambda ds: ds.isel(image=[]), "holds no images"),
    (lambda ds: ds.rename(cam="method"), "dimension names of pescore_nb 0.1"),
])
def test_hand_edited_datasets_are_refused_naming_the_model_and_the_fix(edit, message):
    ds = results_dataset(pruners=("l2", "random"), ratios=(0.3, 0.6), layers=("features.3",))
    with pytest.raises(ValueError, match=message):
        pe.recommend(edit(ds), pe_threshold=0.5)


def test_a_dataset_without_roles_from_an_older_schema_is_read_with_its_rule_said_once():
    ds = results_dataset().drop_vars(schema.ROLE)
    del ds.attrs[schema.SCHEMA_VERSION_ATTRIBUTE]
    with pytest.warns(schema.SchemaUpgradeWarning, match="its first model, 'reference', is read as the reference"):
        assert structure.reference(ds) == schema.REFERENCE


def test_saving_keeps_zarr_by_suffix_in_any_case_and_refuses_a_missing_folder(tmp_path):
    ds = results_dataset()
    pe.save(ds, tmp_path / "x.ZARR")
    assert (tmp_path / "x.ZARR" / ".zattrs").is_file()
    with pytest.raises(FileNotFoundError, match="the folder .*missing does not exist; create it first"):
        pe.save(ds, tmp_path / "missing" / "x.nc")
    assert not (tmp_path / "missing").exists()


def test_corrupted_netcdf_bytes_are_detected_on_load(tmp_path):
    ds = results_dataset()
    path = pe.save(ds, tmp_path / "x.nc")
    raw = bytearray(path.read_bytes())
    start = raw.find(ds[schema.HEATMAP].values.ravel()[100:104].tobytes())
    assert start > 0
    raw[start:start + 4000] = bytes(4000)
    corrupted = tmp_path / "corrupted.nc"
    corrupted.write_bytes(raw)
    with pytest.raises(ValueError, match="corrupted: the checksum of its variable 'heatmap' fails"):
        pe.load(corrupted)
    assert float(abs(pe.load(path).pe - ds.pe).max()) == 0.0


def test_files_that_are_not_results_get_a_message_saying_what_is_expected(tmp_path):
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"t": ("x", np.arange(3.0))}).to_netcdf(foreign, engine="h5netcdf")
    with pytest.raises(ValueError, match="holds no pescore_nb results"):
        pe.load(foreign)
    classic = tmp_path / "classic.nc"
    xr.Dataset({"t": ("x", np.arange(3.0))}).to_netcdf(classic, engine="scipy")
    with pytest.raises(ValueError, match="is a netCDF3 \\(classic\\) file"):
        pe.load(classic)
    (tmp_path / "folder.zarr").mkdir()
    with pytest.raises(ValueError, match="is not a Zarr store"):
        pe.load(tmp_path / "folder.zarr")
    (tmp_path / "folder.nc").mkdir()
    with pytest.raises(ValueError, match="is a folder, not a results file"):
        pe.load(tmp_path / "folder.nc")
    path = pe.save(results_dataset(), tmp_path / "x.nc")
    with pytest.raises(ValueError, match="partial must be True or False, got 'no'"):
        pe.load(path, partial="no")


def test_a_saved_store_is_not_taken_for_a_run_to_resume(tmp_path):
    store = tmp_path / "run.zarr"
    ds = evaluated(images(12), store=store)
    pe.save(pe.load(store), tmp_path / "saved.zarr")
    with pytest.raises(FileExistsError, match="is not an evaluate\\(store=...\\) run that can be resumed"):
        evaluated(images(12), store=tmp_path / "saved.zarr")
    assert float(abs(pe.load(tmp_path / "saved.zarr").pe - ds.pe).max()) == 0.0


FULL_DISK = """
import resource, sys
import pescore_nb as pe
sys.path.insert(0, {tests!r})
from synthetic import results_dataset
from test_evidence import evaluated, images
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
try:
    {call}
except OSError as error:
    print("caught:", error)
print("alive")
"""


@pytest.mark.parametrize("call, target", [
    ("pe.save(results_dataset(n_images=60), {path!r})", "x.nc"),
    ("evaluated(images(32, size=64), store={path!r}, batch_size=8)", "run.zarr"),
])
def test_a_full_disk_is_one_error_and_the_process_lives(tmp_path, call, target):
    path = str(tmp_path / target)
    script = FULL_DISK.format(tests=str(Path(__file__).parent), limit=50_000,
                              call=call.format(path=path))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "alive" and lines[-2].startswith("caught: [Errno 27] Could not write"), done.stdout
    assert "File too large" in lines[-2]
    if target == "x.nc":
        assert not (tmp_path / target).exists() and not list(tmp_path.glob(".x.nc*"))


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1 \\(images per batch\\), such as 32; got 2.5"),
    ({"heatmap_size": (0, 5)}, "heatmap_size must be \\(height, width\\) in pixels"),
    ({"outputs": "softmax"}, "outputs must be one of \\('auto', 'logits', 'probabilities'\\)"),
])
def test_bad_arguments_name_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluated(images(6), **kwargs)


def test_grey_images_into_an_rgb_model_name_the_transform_to_use(snapshot):
    reference = pointwise_net(0)
    before = snapshot(reference)
    grey = TensorDataset(torch.rand(6, 1, 8, 8), torch.arange(6) % 3)
    with pytest.raises(ValueError, match="cannot take images of 1 channel.*Grayscale\\(num_output_channels=3\\)"):
        pe.evaluate(reference, {}, grey, layers="1", cams="gradcam", config=CONFIG, progress=False)
    before.assert_unchanged()


def test_a_lazy_view_of_a_replaced_store_fails_loudly_and_a_netcdf_view_keeps_its_version(tmp_path):
    from pescore_nb.store import StaleResultsError

    first, second = results_dataset(seed=0), results_dataset(seed=1)
    for name in ("x.zarr", "x.nc"):
        pe.save(first, tmp_path / name)
        view = pe.load(tmp_path / name)
        pe.save(second, tmp_path / name, overwrite=True)
        if name == "x.zarr":
            with pytest.raises(StaleResultsError, match="was replaced .* load it again"):
                view.pe.values
        else:
            assert float(abs(view.pe - first.pe).max()) == 0.0
        assert float(abs(pe.load(tmp_path / name).pe - second.pe).max()) == 0.0


def test_a_bootstrap_on_too_few_images_per_class_warns_and_negative_resamples_are_refused():
    from pescore_nb import stats

    ds = results_dataset(n_images=12)  # 4 images per class
    with pytest.warns(stats.FewImagesWarning, match="fewer than 10 images"):
        stats.bootstrap(ds, n_resamples=10)
    with pytest.raises(ValueError, match="n_resamples must be an integer >= 1 \\(bootstrap resamples\\)"):
        stats.compare(results_dataset(n_images=30), "l2@0.30", "l2@0.60", n_resamples=-5)


def test_a_sweep_remembers_its_training_images_and_evaluate_refuses_them():
    from pescore_nb import prune

    data = images(30, size=8)
    train = TensorDataset(data.tensors[0][:20], data.tensors[1][:20])
    held_out = TensorDataset(data.tensors[0][20:], data.tensors[1][20:])
    reference = pointwise_net(0)
    candidates = prune.sweep(reference, data.tensors[0][:1], [0.5], pruner=["l2", "taylor"], data=train,
                             samples_per_class=2, finetune=prune.Finetune(train, epochs=1, batch_size=8))
    assert len(getattr(candidates["l2@0.50"], TRAINING_HASHES)) == 20  # fine-tuned on all 20
    overlapping = TensorDataset(data.tensors[0][15:], data.tensors[1][15:])  # 5 training images, 10 held out
    with pytest.raises(ValueError, match="l2@0.50: 5 of 15.*taylor@0.50: 5 of 15.*control:finetune: 5 of 15"):
        pe.evaluate(reference, candidates, overlapping, layers="1", cams="gradcam", config=CONFIG, progress=False)
    ds = pe.evaluate(reference, candidates, held_out, layers="1", cams="gradcam", config=CONFIG, progress=False)
    assert json.loads(ds.attrs["training_overlaps"]) == {} and ds.attrs["allow_overlap"] == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": float("inf")}, "lr must be a positive, finite learning rate"),
    ({"temperature": 4.0}, "temperature=4.0 does nothing without distill=True"),
])
def test_fine_tuning_settings_that_would_do_nothing_or_break_are_refused(kwargs, message):
    from pescore_nb import prune

    with pytest.raises(ValueError, match=message):
        prune.Finetune(images(6), **kwargs)
