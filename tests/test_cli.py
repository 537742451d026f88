"""The ``pescore`` command line: the quick demo end to end, ``pescore run`` on a tiny config, bad configs.

The demo uses the zoo's cached VGG ($PESCORE_CACHE, else ~/.cache/pescore_nb): the first run on a
machine trains it once (minutes on 2 cores); later runs only load it.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pescore_nb import assess, cli, data, load, prune, recommend, runconfig, schema, structure, zoo
from synthetic import results_dataset, seeded_results_dataset

TINY_VGG = [4, "M", 8]  # features.6 is its last ReLU
EXAMPLE = Path(__file__).parents[1] / "examples" / "config.yaml"


def pescore(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pescore_nb", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=1200)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return pescore("demo", "--quick", "--out", "out", cwd=folder), folder / "out"


@pytest.mark.slow
def test_quick_demo_writes_results_figures_and_the_table(quick_demo):
    done, out = quick_demo
    assert done.returncode == 0, done.stderr[-2000:]
    ds = load(out / "results.nc", lazy=False)
    assert ds[schema.HEATMAP].dims == schema.HEATMAP_DIMS
    assert all(ds[name].dims == schema.SCORE_DIMS for name in schema.SCORE_VARIABLES)
    assert set(ds[schema.PRUNER].values) == {schema.UNPRUNED, *cli.DEMO_PRUNERS}
    assert {schema.CONTROL_FINETUNE, schema.CONTROL_TWIN} <= set(structure.seed_groups(ds))
    assert structure.all_seeds(ds) == [0, 1, 2]  # --quick --seed 0: three seeds
    assert sorted(set(ds[schema.RATIO].values.tolist())) == [0.0, *cli.QUICK_PRUNE.ratios]
    assert ds[schema.LAYER].values.tolist() == list(zoo.VGG(6).cam_layers) and ds[schema.CAM].values.tolist() == ["gradcam++"]
    figures = {path.name.split("_")[0] for path in out.glob("*.png")}
    assert {"pe", "heatmaps", "drop"} <= figures
    for text in ("verdict", "params", "MACs", "accuracy", "l2@0.20", "taylor@0.50", "Largest trusted ratio",
                 "accuracy alone would trust up to", "Findings:"):
        assert text in done.stdout
    assert "PE-score" in done.stderr  # the progress bars


@pytest.mark.slow
def test_a_second_demo_refuses_and_leaves_the_results_untouched(quick_demo):
    done, out = quick_demo
    before = (out / "results.nc").read_bytes()
    again = pescore("demo", "--quick", "--out", "out", cwd=out.parent)
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert (out / "results.nc").read_bytes() == before


@pytest.fixture
def tiny_config(tmp_path):
    """A config for a tiny VGG on 20 digits, with its state_dict written beside it; returns a writer."""
    torch.manual_seed(0)
    torch.save(zoo.VGG(10, config=TINY_VGG).state_dict(), tmp_path / "tiny.pt")
    base = {"reference": {"factory": "pescore_nb.zoo:VGG", "kwargs": {"num_classes": 10, "config": TINY_VGG},
                          "weights": "tiny.pt"},
            "prune": {"pruner": "l2", "ratios": [0.25, 0.5]},
            "data": {"source": "digits", "limit": 20}, "layers": ["features.6"], "output": "out"}

    def write(**changes):
        config = {**base, **changes}
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({key: value for key, value in config.items() if value is not None}))
        return path
    return write


def test_run_scores_a_pruning_sweep_from_a_config(tiny_config, capsys):
    path = tiny_config()
    assert cli.main(["run", str(path)]) == 0
    ds = load(path.parent / "out" / "results.nc", lazy=False)
    assert ds[schema.MODEL].values.tolist() == [schema.REFERENCE, "l2@0.25", "l2@0.50",
                                                 schema.RANDOMISED_PREFIX + "features.6"]
    assert ds[schema.ROLE].values.tolist() == ["reference", "candidate", "candidate", "control"]
    assert ds[schema.LAYER].values.tolist() == ["features.6"] and ds.sizes[schema.IMAGE] == 20
    assert "verdict" in capsys.readouterr().out
    assert len(list((path.parent / "out").glob("*.png"))) == 3


def test_run_refuses_before_any_work_when_a_report_or_figure_would_be_replaced(tiny_config, capsys):
    path = tiny_config()
    out = path.parent / "out"
    out.mkdir()
    (out / "report.html").write_text("an earlier report")
    (out / "heatmaps_l2_features.6_gradcam++.png").write_bytes(b"an earlier figure")
    assert cli.main(["run", str(path)]) == 2
    error = capsys.readouterr().err
    assert "already holds report.html, heatmaps_l2_features.6_gradcam++.png" in error and "--overwrite" in error
    assert sorted(p.name for p in out.iterdir()) == ["heatmaps_l2_features.6_gradcam++.png", "report.html"]
    assert (out / "report.html").read_text() == "an earlier report"


def test_a_pruner_name_too_long_for_a_file_is_refused_before_anything_is_saved(tiny_config, capsys, monkeypatch):
    path = tiny_config()
    monkeypatch.setattr(cli, "_figure_plan", lambda pruners, layers, cams: [("x" * 300 + ".png", "heatmap_grid", {})])
    assert cli.main(["run", str(path)]) == 2
    assert "would be 304 bytes (at most 255); shorten the pruner or layer names" in capsys.readouterr().err
    assert not (path.parent / "out" / "results.nc").exists()


def test_the_report_refuses_to_replace_a_file_or_write_onto_a_folder(tmp_path):
    from pescore_nb import report
    from synthetic import results_dataset

    ds = results_dataset()
    page = tmp_path / "report.html"
    page.write_text("mine")
    with pytest.raises(FileExistsError, match="already exists; .* overwrite=True"):
        report(ds, page)
    assert page.read_text() == "mine"
    (tmp_path / "folder.html").mkdir()
    with pytest.raises(ValueError, match="is a folder; give the report's file path"):
        report(ds, tmp_path / "folder.html")
    with pytest.raises(ValueError, match="heatmap_images must be an integer >= 1"):
        report(ds, tmp_path / "other.html", heatmap_images=0)
    assert report(ds.drop_vars(schema.HEATMAP), page, overwrite=True) == page
    assert "holds no heatmaps" in page.read_text() and not list(tmp_path.glob(".report.html*"))


def test_run_scores_listed_candidates_including_a_trusted_pickle(tiny_config, tmp_path, capsys):
    torch.manual_seed(1)
    torch.save(zoo.VGG(10, config=[2, "M", 8]).state_dict(), tmp_path / "narrow.pt")
    torch.save(zoo.VGG(10, config=[3, "M", 8]), tmp_path / "whole.pt")
    path = tiny_config(prune=None, candidates={
        "narrow": {"factory": "pescore_nb.zoo:VGG", "kwargs": {"num_classes": 10, "config": [2, "M", 8]},
                   "weights": "narrow.pt", "pruner": "mine", "ratio": 0.5},
        "whole": {"pickle": "whole.pt", "pruner": "mine", "ratio": 0.25}})
    assert cli.main(["run", str(path), "--trust-pickle"]) == 0
    ds = load(path.parent / "out" / "results.nc", lazy=False)
    assert ds[schema.PRUNER].values.tolist() == [schema.UNPRUNED, "mine", "mine", schema.UNPRUNED]
    assert ds[schema.RATIO].values.tolist() == [0.0, 0.5, 0.25, 0.0]
    assert "Largest trusted ratio" in capsys.readouterr().out


def group_scores(ds, members: list[str], layer: str) -> np.ndarray:
    """The class-weighted PE (support weights) of each model of ``members`` at ``layer``, from ``ds.pe``."""
    labels = ds[schema.LABEL].values
    classes, counts = np.unique(labels, return_counts=True)
    pe = ds[schema.PE].sel(model=members, layer=layer).isel(cam=0).values  # (members, image)
    return sum(count / len(labels) * pe[:, labels == k].mean(axis=1) for k, count in zip(classes, counts))


def mean_and_range(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ({values.min():.3f}–{values.max():.3f})"


def test_the_model_table_has_one_row_per_group_with_the_mean_and_range_over_seeds():
    ds = seeded_results_dataset()
    printed = cli._model_table(ds, assess(ds))
    lines = printed.splitlines()
    below_header = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    rows = {line.split()[0]: line for line in lines[below_header:] if not line.startswith(("An ", "No "))}
    assert list(rows) == ["reference", "l2@0.30", "l2@0.60", "random@0.30", "random@0.60", "control:finetune",
                          "control:twin"]  # no "/seed<s>" row: the seeds of a group share one
    for group in ("l2@0.30", "random@0.60", "control:finetune"):
        members = [f"{group}/seed{seed}" for seed in (0, 1, 2)]
        cells = re.split(r"\s{2,}", rows[group])
        for layer in ("features.3", "features.7"):
            assert mean_and_range(group_scores(ds, members, layer)) in cells
        assert mean_and_range(ds[schema.ACCURACY].sel(model=members).values) in cells
        assert "3" in cells  # the seeds column
    twin = group_scores(ds, [schema.CONTROL_TWIN], "features.3")[0]
    assert f"{twin:.3f}" in re.split(r"\s{2,}", rows[schema.CONTROL_TWIN])  # one model: no range
    assert "Verdict rule:" in printed and "the bound covers the test images and 3 training seeds" in printed


def test_the_verdict_column_names_three_states_and_the_rule_what_the_bound_covers():
    ds = seeded_results_dataset(ratios=(0.02, 0.6), n_images=30)
    ds = ds.drop_sel(model=["l2@0.02/seed2", "l2@0.60/seed2", f"{schema.CONTROL_FINETUNE}/seed2"])
    printed = cli._model_table(ds, assess(ds, max_accuracy_drop=1.0))  # only PE decides here
    verdicts = {line.split()[0]: line for line in printed.splitlines() if line.startswith(("l2@", "random@"))}
    assert verdicts["l2@0.02"].endswith("  trusted")  # drifts less than the fine-tuned control
    assert verdicts["l2@0.60"].endswith("  not trusted: PE")
    for group in ("random@0.02", "random@0.60"):  # seed 2 has no control of its own
        assert "  not assessable: no control of seed 2" in verdicts[group]
    assert ("groups of 2 seeds: the bound covers the test images and 2 training seeds; groups of 3 seeds: the "
            "bound covers the test images and 3 training seeds") in printed
    one_seed = results_dataset(controls={schema.CONTROL_FINETUNE: 0.05})
    assert ("the bound covers the test images only, not training randomness: rerun with several seeds "
            "(prune.sweep(seeds=3))") in cli._model_table(one_seed, assess(one_seed))


def test_every_verdict_section_gives_the_twins_pe_and_who_drifted_as_far():
    ds = seeded_results_dataset()
    twin = group_scores(ds, [schema.CONTROL_TWIN], "features.7")[0]
    below = [group for group in ("l2@0.30", "l2@0.60", "random@0.30", "random@0.60")
             if group_scores(ds, [f"{group}/seed{seed}" for seed in (0, 1, 2)], "features.7").mean() < twin]
    assert below  # the synthetic candidates drift further than the twin
    sentence = f"An independently retrained model (control:twin) scores {twin:.2f} at features.7"
    printed = cli._model_table(ds, assess(ds))
    assert f"{sentence}; {', '.join(below[:-1])} and {below[-1]} score below it: they have drifted as far as " \
           "retraining from scratch would." in printed
    table = recommend(ds)
    assert table.model.isna().all()
    recommendation = cli._recommendation(table)
    assert f"{sentence}; no trusted candidate scores below it." in recommendation
    assert "none trusted" in recommendation and "the bound covers the test images and 3 training seeds" in recommendation
    findings = cli._findings(ds, table)
    assert "the rule says none trusted" in findings and "trusts up to 0.00" not in findings


def test_the_layer_findings_flag_by_the_randomised_copy_and_name_the_checks_not_made():
    ds = results_dataset(n_images=30, controls={schema.CONTROL_FINETUNE: 0.0, schema.CONTROL_TWIN: 0.3,
                                                schema.RANDOMISED_PREFIX + "features.3": 0.05})
    randomised = group_scores(ds, [schema.RANDOMISED_PREFIX + "features.3"], "features.3")[0]
    assert randomised > 0.3  # maps that do not depend on the weights
    lines = {line.split()[2].rstrip(":"): line for line in cli._findings(ds, recommend(ds)).splitlines()
             if line.startswith("- Layer ")}
    assert f"randomised-copy PE {randomised:.2f}" in lines["features.3"]
    assert "flagged: randomised copy's PE above 0.3" in lines["features.3"]
    assert "flagged" not in lines["features.7"]
    assert lines["features.7"].endswith("not checked without control:randomised@features.7.")
    twin = group_scores(ds, [schema.CONTROL_TWIN], "features.7")[0]
    assert f"twin PE {twin:.2f}" in lines["features.7"]  # reported as a scale, never a pass mark


def test_the_degenerate_note_counts_by_role_and_names_the_groups():
    ds = seeded_results_dataset(n_images=12)
    ds[schema.DEGENERATE].loc[{"model": "l2@0.60/seed1", "layer": "features.3"}] = True  # 12 images
    ds[schema.DEGENERATE].loc[{"model": "l2@0.60/seed2", "layer": "features.7"}] = True
    ds[schema.DEGENERATE].loc[{"model": schema.CONTROL_TWIN, "image": [0, 1]}] = True  # 2 images, 2 layers
    note = cli._degenerate_note(ds)
    assert note.startswith(f"Note: 28 of {ds[schema.DEGENERATE].size} maps are degenerate")
    assert "candidates 24 (l2@0.60: 24); controls 4 (control:twin: 4)" in note
    assert cli._degenerate_note(results_dataset()) == ""


def test_the_example_config_is_valid():
    config = runconfig.read(EXAMPLE)
    assert config.reference.zoo == "vgg" and config.prune.pruners == ("l2", "random")
    assert (config.prune.data.source, config.prune.data.split) == ("shapes", "train")
    assert config.prune.finetune == runconfig.FinetuneSpec(epochs=1, lr=5e-4, batch_size=32)  # YAML's "5e-4" too


def test_numbers_without_a_dot_read_as_numbers_and_quoted_ones_are_refused(tiny_config):
    path = tiny_config(prune={"pruner": "l2", "ratios": [0.5], "data": {"source": "digits", "split": "train"},
                              "finetune": {"lr": 0.1}}, recommend={"pe_threshold": 0.5})
    text = path.read_text()
    path.write_text(text.replace("lr: 0.1", "lr: 5e-4").replace("pe_threshold: 0.5", "pe_threshold: 8e-1"))
    config = runconfig.read(path)
    assert config.prune.finetune.lr == 5e-4 and config.pe_threshold == 0.8
    path.write_text(text.replace("lr: 0.1", "lr: '5e-4'"))
    with pytest.raises(runconfig.ConfigError, match="prune.finetune.lr"):
        runconfig.read(path)


def test_a_distilling_finetune_section_builds_a_distilling_recipe(tiny_config):
    path = tiny_config(prune={"pruner": "l2", "ratios": [0.5], "data": {"source": "digits", "split": "train"},
                              "finetune": {"distill": True, "temperature": 3}})
    recipe = runconfig.read(path).prune.finetune.build(data.builtin("digits", "train"))
    assert (recipe.distill, recipe.temperature, recipe.epochs) == (True, 3.0, 1)


TRAIN_DIGITS = {"source": "digits", "split": "train", "limit": 80}  # 5+ images of every class


def test_prune_seeds_workers_and_the_finetune_schedule_are_read(tiny_config):
    counted = runconfig.read(tiny_config(prune={"pruner": "l2", "ratios": [0.5], "seed": 2, "seeds": 3, "workers": 2,
                                                "data": {"source": "digits", "split": "train"},
                                                "finetune": {"schedule": "cosine"}})).prune
    assert (counted.seed, counted.seeds, counted.workers) == (2, 3, 2)
    assert counted.finetune.build(data.builtin("digits", "train")).schedule == "cosine"
    listed = runconfig.read(tiny_config(prune={"pruner": "l2", "ratios": [0.5], "seeds": [0, 4]})).prune
    assert (listed.seed, listed.seeds, listed.workers) == (0, (0, 4), 1)
    plain = runconfig.read(tiny_config()).prune
    assert (plain.seed, plain.seeds, plain.workers) == (0, None, 1)


@pytest.mark.parametrize("changes, error", [
    ({"seeds": 0}, "prune.seeds: seeds must be a number of seeds >= 1 or a list of seeds such as [0, 1, 2], got 0."),
    ({"seeds": "three"},
     "prune.seeds: got 'three'; give a number of seeds, e.g. 3, or a list of seeds, e.g. [0, 1, 2]."),
    ({"seeds": [1, 1]}, "prune.seeds: seed 1 is listed twice in seeds=[1, 1]; list each seed once."),
    ({"seed": 3, "seeds": [0, 1]}, "prune.seeds: seed=3 and the list seeds=[0, 1] both name seeds; put every seed in "
                                   "the list, or pass seeds=2 to count up from seed=3."),
    ({"seed": -1}, "prune.seed: got -1; give an integer seed >= 0."),
    ({"workers": 0}, "prune.workers: got 0; give a number of worker processes >= 1, e.g. 4."),
    ({"workers": True}, "prune.workers: got True; give a number of worker processes >= 1, e.g. 4."),
    ({"data": {"source": "digits", "split": "train"}, "finetune": {"schedule": "step"}},
     "prune.finetune.schedule: got 'step'; give one of ['constant', 'cosine', 'linear']."),
])
def test_bad_prune_seeds_workers_and_schedules_name_the_field(changes, error, tiny_config):
    with pytest.raises(runconfig.ConfigError) as raised:
        runconfig.read(tiny_config(prune={"pruner": "l2", "ratios": [0.5], **changes}))
    assert str(raised.value) == error


def test_run_passes_the_seeds_and_workers_to_the_sweep(tiny_config, monkeypatch):
    seen = {}

    def spy(model, example_input, ratios, **kwargs):
        seen.update(kwargs)
        return sweep(model, example_input, ratios, **kwargs | {"workers": 1})  # spawning is tested in test_prune
    sweep = prune.sweep
    monkeypatch.setattr(prune, "sweep", spy)
    path = tiny_config(prune={"pruner": "l2", "ratios": [0.5], "seed": 1, "seeds": 2, "workers": 3})
    assert cli.main(["run", str(path)]) == 0
    assert (seen["seed"], seen["seeds"], seen["workers"]) == (1, 2, 3)
    models = load(path.parent / "out" / "results.nc")[schema.MODEL].values.tolist()
    assert models[1:3] == ["l2@0.50/seed1", "l2@0.50/seed2"]


def test_run_fine_tunes_on_the_prune_data_and_adds_the_finetune_control(tiny_config):
    path = tiny_config(prune={"pruner": "l2", "ratios": [0.5], "data": TRAIN_DIGITS,
                              "finetune": {"epochs": 1, "lr": 5e-4, "batch_size": 16}})
    assert cli.main(["run", str(path)]) == 0
    ds = load(path.parent / "out" / "results.nc", lazy=False)
    assert ds[schema.MODEL].values.tolist() == [schema.REFERENCE, "l2@0.50", schema.CONTROL_FINETUNE,
                                                 schema.RANDOMISED_PREFIX + "features.6"]
    assert ds[schema.ROLE].values.tolist() == ["reference", "candidate", "control", "control"]
    for model in ("l2@0.50", schema.CONTROL_FINETUNE):
        recipe = json.loads(ds[schema.PROVENANCE].sel({schema.MODEL: model}).item())["finetune"]
        assert recipe == {"epochs": 1, "lr": 5e-4, "batch_size": 16, "seed": 0, "images": 80, "schedule": "cosine"}
    assert ds.sizes[schema.IMAGE] == 20


def test_taylor_ranks_on_the_prune_data_never_the_evaluation_data(tiny_config, monkeypatch):
    seen = {}

    def spy(model, example_input, ratios, **kwargs):
        seen.update(kwargs, example_input=example_input)
        return sweep(model, example_input, ratios, **kwargs)
    sweep = prune.sweep
    monkeypatch.setattr(prune, "sweep", spy)
    path = tiny_config(prune={"pruner": "taylor", "ratios": [0.5], "data": TRAIN_DIGITS})
    assert cli.main(["run", str(path)]) == 0
    assert seen["pruner"] == ("taylor",) and seen["finetune"] is None
    assert len(seen["data"]) == 80 and seen["data"].dataset.targets.shape[0] == 1257  # digits' train split
    assert seen["example_input"].shape == (1, 3, 32, 32)
    assert load(path.parent / "out" / "results.nc")[schema.MODEL].values.tolist()[1] == "taylor@0.50"


def write_image_folder(folder: Path, classes: list[str]) -> None:
    for name in classes:
        (folder / name).mkdir(parents=True)
        Image.new("RGB", (16, 16), (40 * len(name), 0, 0)).save(folder / name / "a.png")


def test_prune_data_in_the_evaluation_folder_is_refused_however_the_path_is_written(tiny_config, tmp_path, capsys):
    write_image_folder(tmp_path / "images", ["cat", "dog"])
    path = tiny_config(data={"source": "images", "size": 16},
                       prune={"pruner": "l2", "ratios": [0.5], "data": {"source": "./images/../images/", "size": 16}})
    assert cli.main(["run", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("pescore: error: prune.data: is the evaluation data (folder ")
    assert "must not be the images you evaluate on" in error


def test_prune_data_with_other_classes_is_refused(tiny_config, tmp_path, capsys):
    write_image_folder(tmp_path / "pets", ["cat", "dog"])
    path = tiny_config(prune={"pruner": "l2", "ratios": [0.5], "data": {"source": "pets", "size": 16}})
    assert cli.main(["run", str(path)]) == 2
    assert error_line(capsys.readouterr().err) == (
        "pescore: error: prune.data: its 2 classes are not the data's 10 classes in the same order; give "
        "images of the same classes (for folders: the same sub-folder names).")


BAD_CONFIGS = {  # case: (changes to the tiny config, field named, words of the fix)
    "unknown key": ({"layrs": ["features.6"]}, "layrs", "did you mean 'layers'"),
    "missing reference": ({"reference": None}, "reference", "missing"),
    "missing weights file": ({"reference": {"factory": "pescore_nb.zoo:VGG", "weights": "nope.pt"}},
                             "reference.weights", "does not exist"),
    "weights of another architecture": ({"reference": {"factory": "pescore_nb.zoo:VGG",
                                                       "kwargs": {"num_classes": 10}, "weights": "tiny.pt"}},
                                        "reference.weights", "does not fit"),
    "factory not importable": ({"reference": {"factory": "nowhere.models:Net"}}, "reference.factory",
                               "cannot import"),
    "bad factory kwargs": ({"reference": {"factory": "pescore_nb.zoo:VGG", "kwargs": {"classes": 3}}},
                           "reference.kwargs", "fix the keyword arguments"),
    "pickle without --trust-pickle": ({"reference": {"pickle": "tiny.pt"}}, "reference.pickle", "--trust-pickle"),
    "two model sources": ({"reference": {"zoo": "vgg", "factory": "pescore_nb.zoo:VGG"}}, "reference",
                          "exactly one of"),
    "unknown zoo architecture": ({"reference": {"zoo": "alexnet", "dataset": "shapes"}}, "reference.zoo",
                                 "'resnet', 'vgg'"),
    "unknown pruning method": ({"prune": {"pruner": "l3", "ratios": [0.5]}}, "prune.pruner", "choose from ['l1'"),
    "ratio out of range": ({"prune": {"pruner": "l2", "ratios": [0.5, 1.5]}}, "prune.ratios", "[0, 1)"),
    "taylor without prune data": ({"prune": {"pruner": ["l2", "taylor"], "ratios": [0.5]}}, "prune.data",
                                  "missing; pruner 'taylor' ranks filters on training images and must never "
                                  "see the evaluation data: give prune.data, e.g. {source: shapes, split: train}."),
    "senpis without prune data": ({"prune": {"pruner": "senpis", "ratios": [0.5]}}, "prune.data",
                                  "pruner 'senpis' ranks filters on training images"),
    "finetune without prune data": ({"prune": {"pruner": "l2", "ratios": [0.5], "finetune": {}}}, "prune.data",
                                    "missing; prune.finetune trains on it and must never see the evaluation data"),
    "temperature without distill": ({"prune": {"pruner": "l2", "ratios": [0.5], "data": {"source": "digits"},
                                               "finetune": {"temperature": 3.0}}}, "prune.finetune.temperature",
                                    "does nothing without distill: true"),
    "prune data is the evaluation data": ({"prune": {"pruner": "l2", "ratios": [0.5],
                                                     "data": {"source": "digits", "split": "test", "limit": 5}}},
                                          "prune.data", "is the evaluation data (digits, split test); the pruning "
                                          "and fine-tuning data must not be the images you evaluate on"),
    "prune data defaults to train": ({"data": {"source": "digits", "split": "train"},
                                      "prune": {"pruner": "l2", "ratios": [0.5], "data": "digits"}},
                                     "prune.data", "is the evaluation data (digits, split train)"),
    "bad prune data split": ({"prune": {"pruner": "l2", "ratios": [0.5], "data": {"source": "digits",
                                                                                  "split": "val"}}},
                             "prune.data.split", "one of ['train', 'test']"),
    "bad finetune lr": ({"prune": {"pruner": "l2", "ratios": [0.5], "data": TRAIN_DIGITS, "finetune": {"lr": 0}}},
                        "prune.finetune.lr", "a positive learning rate"),
    "finetune lr not a number": ({"prune": {"pruner": "l2", "ratios": [0.5], "data": TRAIN_DIGITS,
                                            "finetune": {"lr": "fast"}}}, "prune.finetune.lr", "got 'fast'"),
    "bad finetune epochs": ({"prune": {"pruner": "l2", "ratios": [0.5], "data": TRAIN_DIGITS,
                                       "finetune": {"epochs": 0}}}, "prune.finetune.epochs", "epochs >= 1"),
    "finetune distill not a flag": ({"prune": {"pruner": "l2", "ratios": [0.5], "data": TRAIN_DIGITS,
                                               "finetune": {"distill": "yes"}}}, "prune.finetune.distill",
                                   "true or false"),
    "bad finetune temperature": ({"prune": {"pruner": "l2", "ratios": [0.5], "data": TRAIN_DIGITS,
                                            "finetune": {"distill": True, "temperature": 0}}},
                                 "prune.finetune.temperature", "a positive temperature"),
    "unknown finetune key": ({"prune": {"pruner": "l2", "ratios": [0.5], "data": TRAIN_DIGITS,
                                        "finetune": {"epoch": 2}}}, "prune.finetune.epoch", "did you mean 'epochs'"),
    "candidates and prune": ({"candidates": {"x": {"factory": "pescore_nb.zoo:VGG"}}}, "candidates", "not both"),
    "unknown data source": ({"data": {"source": "shapez"}}, "data.source", "neither a built-in dataset"),
    "unknown CAM method": ({"cams": ["gradcam+++"]}, "cams", "did you mean 'gradcam++'"),
    "bad PE value": ({"pe": {"combine": "sum"}}, "pe", "combine must be one of"),
    "unknown PE field": ({"pe": {"iou": 0.5}}, "pe.iou", "did you mean 'iou_threshold'"),
    "bad batch size": ({"batch_size": 0}, "batch_size", "positive integer"),
    "bad threshold": ({"recommend": {"pe_threshold": "high"}}, "recommend.pe_threshold", "in [0, 1]"),
    "layer not in the model": ({"layers": ["features.99"]}, "layers", "named_modules"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_bad_config_gives_one_line_naming_the_field_and_exit_code_2(case, tiny_config, capsys):
    changes, field, fix = BAD_CONFIGS[case]
    assert cli.main(["run", str(tiny_config(**changes))]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert error.startswith(f"pescore: error: {field}: ") and fix in error


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_is_refused(tiny_config, capsys):
    assert cli.main(["run", str(tiny_config(device="cuda"))]) == 2
    assert "device: 'cuda' is not available" in capsys.readouterr().err


def test_existing_results_are_refused_before_any_work(tiny_config, capsys):
    path = tiny_config()
    (path.parent / "out").mkdir()
    (path.parent / "out" / "results.nc").write_bytes(b"keep me")
    assert cli.main(["run", str(path)]) == 2
    assert "output: " in capsys.readouterr().err
    assert (path.parent / "out" / "results.nc").read_bytes() == b"keep me"


@pytest.mark.parametrize("text, fix", [("reference: [unclosed", "not valid YAML at line 1"),
                                       (None, "is not a file")])
def test_an_unreadable_config_file_is_named(tmp_path, text, fix, capsys):
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    assert cli.main(["run", str(path)]) == 2
    assert fix in capsys.readouterr().err


def test_the_module_entry_point_exits_2_without_a_traceback(tiny_config):
    done = pescore("run", str(tiny_config(layrs=["x"])), cwd=Path.cwd())
    assert done.returncode == 2 and "Traceback" not in done.stderr and "layrs" in done.stderr


def error_line(stderr: str) -> str:
    """The one ``pescore: error`` line, which must close stderr (progress bars may come before it)."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert "Traceback" not in stderr and [line for line in lines if line.startswith("pescore:")] == lines[-1:]
    return lines[-1]


def test_an_unwritable_output_is_refused_before_any_work(tiny_config, tmp_path, capsys):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output folder should be")
    assert cli.main(["run", str(tiny_config(output=str(blocked / "out")))]) == 2
    assert "cannot write in" in error_line(capsys.readouterr().err)


NOT_SPATIAL = {"layers": ["classifier.1"]}


@pytest.mark.parametrize("case, changes, needle", [
    ("non-spatial layer", NOT_SPATIAL, "CAMs need an (N, C, h, w) tensor"),
    ("wrongly typed PE field", {"pe": {"ssim_window": "eleven"}}, "pe:"),
    ("colliding ratios", {"prune": {"pruner": "l2", "ratios": [0.201, 0.204]}}, "round to 0.20"),
])
def test_bad_runs_give_one_line_and_exit_2(case, changes, needle, tiny_config, capsys):
    assert cli.main(["run", str(tiny_config(**changes))]) == 2, case
    assert needle in error_line(capsys.readouterr().err)


def test_a_layer_that_gives_no_map_is_refused_before_any_pruning(tiny_config, capsys, monkeypatch):
    monkeypatch.setattr(prune, "sweep", lambda *args, **kwargs: pytest.fail("pruned before checking the layer"))
    assert cli.main(["run", str(tiny_config(**NOT_SPATIAL))]) == 2
    assert error_line(capsys.readouterr().err).startswith("pescore: error: layers: the reference's maps of the first "
                                                          "image fail: Layer 'classifier.1' gives")


def test_a_candidate_with_other_classes_and_a_factory_that_raises_give_one_line(tiny_config, tmp_path, capsys):
    torch.save(zoo.VGG(4, config=TINY_VGG).state_dict(), tmp_path / "four.pt")
    path = tiny_config(prune=None, candidates={"four": {"factory": "pescore_nb.zoo:VGG", "weights": "four.pt",
                                                        "kwargs": {"num_classes": 4, "config": TINY_VGG}}})
    assert cli.main(["run", str(path)]) == 2
    assert "reference's 10 classes" in error_line(capsys.readouterr().err)
    (tmp_path / "broken_models.py").write_text("raise RuntimeError('no GPU driver')\n")
    path = tiny_config(prune=None, candidates={"x": {"factory": "broken_models:Net"}})
    assert cli.main(["run", str(path)]) == 2
    assert "raised RuntimeError: no GPU driver" in error_line(capsys.readouterr().err)


def test_a_folder_without_classes_and_a_corrupt_image_give_one_line(tiny_config, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes(b"not a png")
    assert cli.main(["run", str(tiny_config(data={"source": "flat", "size": 16}))]) == 2
    assert "flat" in error_line(capsys.readouterr().err)
    corrupt = tmp_path / "folder" / "cat"
    corrupt.mkdir(parents=True)
    (corrupt / "a.png").write_bytes(b"not a png")
    (tmp_path / "folder" / "dog").mkdir()
    (tmp_path / "folder" / "dog" / "b.png").write_bytes(b"not a png either")
    assert cli.main(["run", str(tiny_config(data={"source": "folder", "size": 16}))]) == 2
    assert "a.png" in error_line(capsys.readouterr().err)


def test_file_names_never_leave_the_output_folder():
    assert cli.safe_file_name("heatmaps_../../../escape_features.6_gradcam++.png") == \
        "heatmaps_.._.._.._escape_features.6_gradcam++.png"
    assert "/" not in cli.safe_file_name("a/b\\c") and not cli.safe_file_name("..hidden").startswith(".")


def test_the_config_folder_comes_after_installed_packages(tiny_config, tmp_path):
    (tmp_path / "yaml.py").write_text("raise RuntimeError('shadowed')\n")
    runconfig.read(tiny_config())
    assert sys.path[-1] == str(tmp_path) and sys.path.index(str(tmp_path)) > 0
