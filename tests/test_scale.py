"""Streaming to a Zarr store, resuming after SIGKILL, reduced heatmap storage, and dask workers."""
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from distributed import Client, LocalCluster

from pescore_nb import evaluate, load
from pescore_nb.store import DONE, RUN_ARGUMENTS, ZarrRun
from test_evaluate import MaskedImages, tiny_cnn

KWARGS = dict(layers=["3", "7"], cams=["gradcam++", "layercam"], batch_size=3, progress=False)


def masked_images(count: int = 10) -> MaskedImages:
    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(count, 24, 24, dtype=torch.bool)
    masks[:, 5:15, 5:15] = True
    return MaskedImages(torch.rand(count, 3, 24, 24, generator=generator), torch.arange(count) % 3, masks)


def models():
    return tiny_cnn(), {"c": tiny_cnn(seed=1), "d": tiny_cnn(seed=2)}


def without_run_arguments(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset without the store's record of its arguments, to compare with an in-memory run."""
    return ds.load().drop_attrs(deep=False).assign_attrs(
        {key: value for key, value in ds.attrs.items() if key != RUN_ARGUMENTS})


@pytest.fixture(scope="module")
def in_memory():
    reference, candidates = models()
    return evaluate(reference, candidates, masked_images(), **KWARGS)


def test_a_stored_run_equals_the_in_memory_run_and_opens_lazily(in_memory, tmp_path):
    reference, candidates = models()
    stored = evaluate(reference, candidates, masked_images(), store=str(tmp_path / "run.zarr"), **KWARGS)
    assert stored.heatmap.chunks is not None and stored.heatmap.chunks[3] == (3, 3, 3, 1)  # by batch
    xr.testing.assert_identical(without_run_arguments(stored), in_memory)
    xr.testing.assert_identical(without_run_arguments(load(tmp_path / "run.zarr")), in_memory)


def test_reduced_heatmaps_keep_full_resolution_scores(in_memory):
    reference, candidates = models()
    small = evaluate(reference, candidates, masked_images(), heatmap_size=(12, 12), heatmap_dtype="float16",
                     **KWARGS)
    assert small.heatmap.shape[-2:] == (12, 12) and small.heatmap.dtype == np.float16
    assert small.input.shape[-2:] == (12, 12)
    for name in ("ssim", "iou", "conf", "pe", "energy_in_mask", "prob"):
        xr.testing.assert_equal(small[name], in_memory[name])
    full = torch.from_numpy(in_memory.heatmap.values).reshape(-1, 1, 24, 24)
    expected = torch.nn.functional.interpolate(full, size=(12, 12), mode="bilinear", antialias=True)
    np.testing.assert_allclose(small.heatmap.values.reshape(-1, 1, 12, 12).astype(np.float32), expected.numpy(),
                               atol=1e-3)


def test_a_store_written_with_other_arguments_is_refused_and_kept(tmp_path):
    reference, candidates = models()
    path = tmp_path / "run.zarr"
    evaluate(reference, candidates, masked_images(), store=str(path), **KWARGS)
    before = {file: file.read_bytes() for file in path.rglob("*") if file.is_file()}
    with pytest.raises(ValueError, match=r"other arguments or data \(cams, layers differ\).*another store path"):
        evaluate(reference, candidates, masked_images(), store=str(path), **{**KWARGS, "layers": ["7"],
                                                                              "cams": ["gradcam"]})
    candidates["c"].state_dict()["0.weight"].add_(1.0)  # same names, other weights
    with pytest.raises(ValueError, match=r"\(weights differ\)"):
        evaluate(reference, candidates, masked_images(), store=str(path), **KWARGS)
    assert before == {file: file.read_bytes() for file in path.rglob("*") if file.is_file()}


def test_a_path_not_written_by_evaluate_is_refused(tmp_path):
    reference, candidates = models()
    path = tmp_path / "other.zarr"
    xr.Dataset({"a": ("x", [1, 2])}).to_zarr(path, zarr_format=2)
    with pytest.raises(FileExistsError, match="is not an evaluate\\(store=...\\) run that can be resumed"):
        evaluate(reference, candidates, masked_images(), store=str(path), **KWARGS)
    with pytest.raises(ValueError, match="must be a '.zarr' path"):
        evaluate(reference, candidates, masked_images(), store=str(tmp_path / "run.nc"), **KWARGS)


def run_in_child(path: str, count: int) -> None:
    """What the killed child process runs: a slow, stored evaluation."""
    reference, candidates = models()
    evaluate(reference, candidates, masked_images(count), store=path, **{**KWARGS, "batch_size": 2})


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    count = 60
    path = tmp_path / "run.zarr"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from test_scale import run_in_child; run_in_child({str(path)!r}, {count})")
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    done = 0
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and child.poll() is None:
            if path.exists():
                done = int(ZarrRun(path).done().sum())
                if done >= count // 3:
                    break
            time.sleep(0.05)
        assert child.poll() is None, "the child finished before it could be killed; give it more images"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL and 0 < done < count
    assert not ZarrRun(path).done().all()
    reference, candidates = models()
    resumed = evaluate(reference, candidates, masked_images(count), store=str(path), **{**KWARGS, "batch_size": 2})
    uninterrupted = evaluate(reference, candidates, masked_images(count), **{**KWARGS, "batch_size": 2})
    xr.testing.assert_identical(without_run_arguments(resumed), uninterrupted)
    assert DONE not in resumed


def test_dask_workers_give_the_single_process_result(in_memory, tmp_path):
    factories = {"c": functools.partial(tiny_cnn, seed=1), "d": functools.partial(tiny_cnn, seed=2)}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        distributed = evaluate(tiny_cnn, factories, masked_images(), store=str(tmp_path / "run.zarr"),
                               client=client, **KWARGS)
        assert len(client.scheduler_info()["workers"]) == 2
    xr.testing.assert_identical(without_run_arguments(distributed), in_memory)


def test_a_client_needs_a_store():
    reference, candidates = models()
    with pytest.raises(ValueError, match="pass store='results.zarr' too"):
        evaluate(reference, candidates, masked_images(), client=object(), **KWARGS)


def test_bad_storage_and_model_arguments_are_named():
    reference, candidates = models()
    with pytest.raises(ValueError, match=r"heatmap_dtype must be one of \('float32', 'float16'\)"):
        evaluate(reference, candidates, masked_images(), heatmap_dtype="int8", **KWARGS)
    with pytest.raises(TypeError, match=r"\['c'\] are neither torch models nor factories"):
        evaluate(reference, {"c": lambda: "not a model"}, masked_images(), **KWARGS)


def test_a_stored_run_refuses_an_image_of_another_size_in_a_later_batch(tmp_path):
    reference, candidates = models()
    images = [(torch.rand(3, 24, 24), 0)] * 3 + [(torch.rand(3, 32, 32), 1)] * 2  # batches of 3
    with pytest.raises(ValueError, match=r"got \(3, 32, 32\) at image 3, but the first is \(3, 24, 24\)"):
        evaluate(reference, candidates, images, store=str(tmp_path / "run.zarr"), **KWARGS)


def test_an_unfinished_store_is_not_passed_off_as_a_result(tmp_path):
    template = xr.Dataset({"pe": (("model", "image"), np.zeros((1, 4)))},
                          coords={"model": ["reference"], "image": np.arange(4), "accuracy": ("model", [np.nan])})
    run = ZarrRun.open_or_create(tmp_path / "run.zarr", {"a": "1"}, lambda: template.chunk({"image": 2}))
    with pytest.raises(RuntimeError, match="4 images of .* are not written yet; run evaluate again"):
        run.finish(lambda ds: ds.pe.mean("image"))
    assert not run.done().any()


def test_loading_a_missing_path_says_how_to_save(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No results at .*missing.nc; write them with pescore_nb.save"):
        load(tmp_path / "missing.nc")
