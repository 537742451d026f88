"""The explorer driven from Python, in the style of ipywidgets' own tests: set a control, check outputs."""
import html
import io
import re

import dask.array
import matplotlib.text
import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image
from torch.utils.data import Subset

import pescore_nb
from pescore_nb import by_class, data, evaluate, schema, structure, wording, zoo
from pescore_nb.explorer import Explorer, explore
from pescore_nb.explorer.app import ALL
from pescore_nb.explorer.render import colorbar_figure, overlay
from pescore_nb.explorer.summary import SummaryFigure
from pescore_nb.plot import DIFFERENCE_COLORMAP
from tests.synthetic import results_dataset, seeded_results_dataset
from tests.test_wording import one_pruner_trusted_the_other_not


@pytest.fixture
def ds():
    return results_dataset(n_images=12, size=24, cams=("gradcam++", "gradcam"), distinct_maps=True)


def readout_numbers(explorer: Explorer) -> dict:
    """The SSIM, IoU, Conf and PE shown in the readout, parsed from its HTML."""
    return {name.lower(): float(value)
            for name, value in re.findall(r"(SSIM|IoU|Conf|PE) <b>([0-9.]+)</b>", explorer.readout.value)}


def selected(explorer: Explorer) -> dict:
    """The Dataset labels of what the controls select: model name, layer, method, image."""
    c, catalog = explorer.controls, explorer.catalog
    return {schema.MODEL: catalog.name(catalog.model_at(c.pruner.value, c.ratio.value)),
            schema.LAYER: catalog.layers[c.layer.value], schema.CAM: catalog.cams[c.cam.value],
            schema.IMAGE: int(catalog.small[schema.IMAGE].values[c.image.value])}


def pixels(png_or_jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png_or_jpeg)))


def test_explore_returns_a_widget_and_the_accessor_builds_the_same(ds):
    explorer = ds.pescore.explore()
    assert isinstance(explorer, Explorer)
    assert isinstance(pescore_nb.explore(ds), Explorer)
    assert pixels(explorer.panels.candidate.value).shape == (24, 24, 3)
    assert explorer.controls.ratio.options == (("0.30", 0.3), ("0.60", 0.6))


def test_ratio_changes_the_candidate_panels_but_not_the_reference(ds):
    explorer = explore(ds)
    panels = explorer.panels
    before = {name: getattr(panels, name).value for name in ("picture", "reference", "candidate", "difference",
                                                            "masks", "side_b", "summary")}
    explorer.controls.ratio.value = 0.6
    assert panels.picture.value == before["picture"]
    assert panels.reference.value == before["reference"]
    for name in ("candidate", "difference", "masks", "side_b", "summary"):
        assert getattr(panels, name).value != before[name], f"{name} did not change with the ratio"
    assert panels.side_a.value == panels.candidate.value
    assert "L2-norm filter @ 0.60" in explorer.captions.candidate.value


def test_readout_numbers_equal_the_datasets_for_every_selection(ds):
    explorer = explore(ds)
    c = explorer.controls
    for pruner, ratio, layer, cam in [("l2", 0.3, 0, 0), ("random", 0.6, 1, 0), ("random", 0.3, 1, 1)]:
        c.pruner.value, c.ratio.value, c.layer.value, c.cam.value = pruner, ratio, layer, cam
        c.image.value = c.image.options[-1][1]  # the highest PE of the list
        where = selected(explorer)
        assert where[schema.MODEL] == f"{pruner}@{ratio:.2f}"
        shown = readout_numbers(explorer)
        for name in ("ssim", "iou", "conf", "pe"):
            assert shown[name] == pytest.approx(float(ds[name].sel(where)), abs=5e-5), name


def test_the_image_panels_show_the_datasets_maps(ds):
    explorer = explore(ds)
    c = explorer.controls
    c.ratio.value, c.layer.value = 0.6, 1
    c.image.value = 5
    where = selected(explorer)
    reference = ds.heatmap.sel({**where, schema.MODEL: schema.REFERENCE}).values
    candidate = ds.heatmap.sel(where).values
    threshold = pescore_nb.PEConfig.from_attrs(ds.attrs).iou_threshold
    shown = pixels(explorer.panels.masks.value)  # PNG: exact colours
    both = (reference >= threshold) & (candidate >= threshold)
    assert np.array_equal(np.all(shown == 255, axis=-1), both)
    assert np.array_equal(np.all(shown == 0, axis=-1), (reference < threshold) & (candidate < threshold))
    picture = pixels(explorer.panels.picture.value).astype(float)  # JPEG: close, not exact
    assert np.abs(picture - ds.input.sel(image=5).values.transpose(1, 2, 0)).mean() < 12
    assert np.abs(picture - ds.input.sel(image=6).values.transpose(1, 2, 0)).mean() > 50


def test_summary_curves_and_bars_equal_by_class(ds):
    explorer = explore(ds)
    c, summary = explorer.controls, explorer.summary
    c.pruner.value, c.compare.value, c.layer.value, c.cam.value, c.ratio.value = "random", "l2", 1, 1, 0.3
    pe = by_class(ds).sel({schema.LAYER: "features.7", schema.CAM: "gradcam"})  # method= is sel's own
    models = [schema.REFERENCE, "random@0.30", "random@0.60"]
    for k, line in enumerate(summary.pe_lines):
        np.testing.assert_allclose(line.get_xdata(), [0.0, 0.3, 0.6])
        np.testing.assert_allclose(line.get_ydata(), pe.sel(model=models, **{schema.LABEL: k}).values)
    correct = (ds.pred == ds.label).groupby(ds.label).mean(schema.IMAGE)
    np.testing.assert_allclose(summary.accuracy_lines[2].get_ydata(), correct.sel(model=models, label=2).values)
    np.testing.assert_allclose(summary.pe_line.get_ydata(),
                               pescore_nb.score(ds).sel({schema.MODEL: models, schema.LAYER: "features.7",
                                                         schema.CAM: "gradcam"}))
    assert list(summary.marker.get_xdata()) == [0.3, 0.3]
    lengths = [bar.get_width() for bar in summary.bars[:-1]]
    np.testing.assert_allclose(lengths, pe.sel(model="random@0.30").values)
    compared = [bar.get_width() for bar in summary.compared_bars[:-1]]
    np.testing.assert_allclose(compared, pe.sel(model="l2@0.30").values)


def test_class_filter_restricts_the_picker_to_that_class_lowest_pe_first(ds):
    explorer = explore(ds)
    c = explorer.controls
    pe = ds.pe.sel({schema.MODEL: "l2@0.30", schema.LAYER: "features.3", schema.CAM: "gradcam++"}).values
    c.label.value = 1
    images = [value for _, value in c.image.options]
    assert set(images) == set(np.flatnonzero(ds.label.values == 1))
    assert list(pe[images]) == sorted(pe[images])
    assert c.image.value in images
    assert [line.get_alpha() for line in explorer.summary.pe_lines] == [0.2, 1.0, 0.2]
    c.label.value = ALL
    assert len(c.image.options) == ds.sizes[schema.IMAGE]


def test_pruner_change_offers_its_ratios_and_keeps_the_nearest():
    ds = results_dataset(size=16).drop_sel(model="random@0.60")
    explorer = explore(ds)
    c = explorer.controls
    c.ratio.value = 0.6
    assert "no random filter model here" in explorer.captions.side_b.value
    assert all(bar.get_width() == 0 for bar in explorer.summary.compared_bars)
    c.pruner.value = "random"
    assert c.ratio.options == (("0.30", 0.3),)
    assert selected(explorer)[schema.MODEL] == "random@0.30"


def test_compare_never_shows_a_pruner_beside_itself():
    ds = results_dataset(n_images=12, size=16, pruners=("l2", "random", "l1"))
    explorer = explore(ds)
    panels, c = explorer.panels, explorer.controls
    assert c.pruner.value == "l2" and [v for _, v in c.compare.options] == ["random", "l1"]
    candidate, side_b = panels.candidate.value, panels.side_b.value
    c.compare.value = "l1"
    assert panels.candidate.value == candidate and panels.side_b.value != side_b  # only the side-by-side changed
    c.pruner.value = "l1"  # the compared pruner becomes the selected one: B must move to another
    assert c.compare.value != "l1" and "l1" not in [v for _, v in c.compare.options]
    assert explorer.compared_model() != explorer.selected_model()
    assert "hatched L2-norm filter @ 0.30" in explorer.captions.summary.value


def test_one_pruner_hides_the_side_by_side_view():
    explorer = explore(results_dataset(n_images=12, size=16, pruners=("l2",)))
    assert explorer.controls.compare.layout.display == "none"
    assert explorer._side_by_side.layout.display == "none"
    assert explorer.compared_model() is None


def test_the_degenerate_note_is_about_the_pair_shown_only(ds):
    ds = ds.copy(deep=True)
    ds[schema.DEGENERATE].loc[{schema.MODEL: "random@0.60"}] = True  # another model's maps, at every image
    explorer = explore(ds)
    c = explorer.controls
    assert selected(explorer)[schema.MODEL] == "l2@0.30"
    assert "degenerate" not in explorer.readout.value  # the pair shown (reference, l2@0.30) has signal
    c.pruner.value, c.ratio.value = "random", 0.6
    assert "the candidate's map is degenerate (constant CAM)" in explorer.readout.value
    c.ratio.value = 0.3
    assert "degenerate" not in explorer.readout.value
    image = c.image.value
    ds[schema.DEGENERATE].loc[{schema.IMAGE: image}] = True  # the reference's map constant: every pair with it
    explorer = explore(ds)
    explorer.controls.image.value = image
    assert "the reference's map is degenerate (constant CAM)" in explorer.readout.value
    explorer.controls.image.value = next(value for _, value in explorer.controls.image.options if value != image)
    assert "degenerate" not in explorer.readout.value


def test_lazy_dataset_from_disk_shows_the_same_panels(ds, tmp_path):
    path = tmp_path / "results.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf", chunks={}) as lazy:
        assert isinstance(lazy.heatmap.data, dask.array.Array)
        from_disk, in_memory = explore(lazy), explore(ds)
        for explorer in (from_disk, in_memory):
            explorer.controls.ratio.value, explorer.controls.layer.value = 0.6, 1
            explorer.controls.image.value = 7
        for name in ("picture", "reference", "candidate", "masks", "summary"):
            assert getattr(from_disk.panels, name).value == getattr(in_memory.panels, name).value, name
        assert from_disk.readout.value == in_memory.readout.value
        assert isinstance(lazy.heatmap.data, dask.array.Array)  # the explorer did not load the maps


def test_errors_name_the_problem_and_the_fix(ds):
    with pytest.raises(ValueError, match=r"lacks \['input'\].*pescore_nb.evaluate"):
        explore(ds.drop_vars(schema.INPUT))
    twice = ds.assign_coords({schema.RATIO: (schema.MODEL, [0.0, 0.3, 0.3, 0.3, 0.6])})
    with pytest.raises(ValueError, match=r"'l2' has two models at one ratio.*different pruner names"):
        explore(twice)
    with pytest.raises(ValueError, match="no pruned candidate"):
        explore(ds.isel(model=[0]))


CONTROLS = {schema.CONTROL_FINETUNE: 0.05, schema.CONTROL_TWIN: 0.3}


def test_opens_on_the_first_pruners_lowest_ratio_and_the_median_image():
    ds = results_dataset(n_images=15, size=16, ratios=(0.6, 0.2, 0.4), controls=CONTROLS)
    ds = ds.isel(model=[1, 2, 0, 3, 4, 5, 6, 7, 8])  # the reference not first: found by role, not position
    explorer = explore(ds)
    c = explorer.controls
    assert (c.pruner.value, c.ratio.value) == ("l2", 0.2)
    pe = ds.pe.sel({schema.MODEL: "l2@0.20", schema.LAYER: "features.3", schema.CAM: "gradcam++"}).values
    median = np.median(pe)
    assert abs(pe[c.image.value] - median) == np.min(np.abs(pe - median))
    assert pe[c.image.value] > pe.min()  # not the worst image ...
    explorer.worst.click()  # ... which stays one click away
    assert pe[c.image.value] == pe.min()
    reference = ds.heatmap.sel({schema.MODEL: schema.REFERENCE, schema.LAYER: "features.3"}).isel(cam=0)
    threshold = pescore_nb.PEConfig.from_attrs(ds.attrs).iou_threshold
    both = pixels(explorer.panels.masks.value).min(axis=-1) == 255
    assert not np.any(both & (reference.isel(image=c.image.value).values < threshold))


def test_candidates_without_ratios_get_a_model_picker():
    ds = results_dataset(n_images=12, size=16, controls=CONTROLS)
    names = ds.model.values.tolist()
    unswept = ds.assign_coords({schema.RATIO: (schema.MODEL, [0.0] + [np.nan] * 4 + [0.0, 0.0]),
                                schema.PRUNER: (schema.MODEL, ["none"] + ["unknown"] * 4 + ["none", "none"])})
    explorer = explore(unswept)  # used to raise TraitError: Invalid selection
    c = explorer.controls
    assert not hasattr(c, "ratio") and not hasattr(c, "pruner")
    assert [name for name, _ in c.model.options][:4] == names[1:5]
    assert c.model.value != c.compare.value
    c.model.value = names.index("random@0.60")
    assert "<b>random@0.60</b>" in explorer.readout.value
    shown = readout_numbers(explorer)["pe"]
    where = {schema.LAYER: "features.7" if c.layer.value else "features.3", schema.CAM: "gradcam++",
             schema.IMAGE: c.image.value}
    assert shown == pytest.approx(float(ds.pe.sel(where).sel(model="random@0.60")), abs=5e-5)
    c.compare.value = c.compare.options[-1][1]  # the last model of the picker: control:twin
    assert "hatched control: twin" in explorer.captions.summary.value


def test_a_users_own_models_scored_by_evaluate_show_side_by_side_with_a_verdict():
    torch.manual_seed(0)
    reference, mine, theirs = (zoo.VGG(10, config=[4, "M", 8]).eval() for _ in range(3))
    ds = evaluate(reference, {"mine": mine, "theirs": theirs}, Subset(data.builtin("digits", "test"), range(20)),
                  layers=["features.6"], progress=False)
    assert np.isnan(ds[schema.RATIO].sel(model=["mine", "theirs"]).values).all()  # no pruner, no ratio
    explorer = explore(ds)
    c = explorer.controls
    assert [name for name, _ in c.model.options] == ["mine", "theirs"]
    assert [name for name, _ in c.compare.options] == ["theirs"]
    image = c.image.value
    picture = ds[schema.INPUT].isel(image=image).values.transpose(1, 2, 0)
    expected = {model: overlay(picture, ds[schema.HEATMAP].sel(model=model).isel(layer=0, cam=0, image=image).values)
                for model in ("mine", "theirs")}
    assert np.abs(expected["mine"].astype(float) - expected["theirs"]).mean() > 10  # two maps to tell apart
    for panel, model in (("side_a", "mine"), ("side_b", "theirs")):
        shown = pixels(getattr(explorer.panels, panel).value).astype(float)  # JPEG: close, not exact
        assert np.abs(shown - expected[model]).mean() < 3, panel
    verdict = pescore_nb.assess(ds).sel(model="mine", layer="features.6", cam="gradcam++")
    words = wording.verdict_text(verdict, explorer.catalog.layer_flag(0, 0))
    assert f"style='color:{words.colour};font-size:15px'" in explorer.verdict.value
    assert f"{words.mark} {html.escape(words.headline)}</b> · mine" in explorer.verdict.value
    assert [tick.get_text() for tick in explorer.summary.curve_axes.get_xticklabels()] == ["reference", "mine",
                                                                                         "theirs"]


def test_verdict_follows_the_trust_rule_and_the_ratio():
    ds = results_dataset(n_images=30, size=16, ratios=(0.02, 0.6), controls={schema.CONTROL_FINETUNE: 0.0})
    explorer = explore(ds)
    verdicts = pescore_nb.assess(ds).sel({schema.LAYER: "features.3", schema.CAM: "gradcam++"})
    assert bool(verdicts.trustworthy.sel(model="l2@0.02")) and not bool(verdicts.trustworthy.sel(model="l2@0.60"))
    assert "✔ trusted</b>" in explorer.verdict.value
    control_pe = float(verdicts.control_pe)
    assert f"control:finetune model PE (class-weighted) <b>{control_pe:.3f}</b>" in explorer.verdict.value
    assert (f"<b class='pescore-ratio-verdict' style='color:{wording.STATE_COLOURS['trusted']}'>trusted up to ratio "
            "0.02</b> (ratio 0.60 fails on PE") in explorer.verdict.value
    explorer.controls.ratio.value = 0.6
    assert "✘ not trusted</b>" in explorer.verdict.value
    assert explorer.summary.trust_line.get_ydata()[0] == pytest.approx(control_pe)
    assert explorer.summary.trusted_span.get_x() + explorer.summary.trusted_span.get_width() == pytest.approx(0.02)


def test_colour_bars_and_a_fixed_size_summary(ds):
    explorer = explore(ds)
    cam_bar = pixels(explorer.colorbars.cam.value)
    assert cam_bar.shape[0] == explorer.panel_width
    assert pixels(explorer.colorbars.difference.value).shape[0] == explorer.panel_width
    summary = pixels(explorer.panels.summary.value)
    width, height = explorer.summary.pixels
    assert summary.shape[:2] == (height, width)
    assert explorer.panels.summary.layout.width == f"{width}px"
    assert explorer.summary.curve_axes.get_ylabel() and explorer.summary.bar_axes.get_xlabel()
    names = explorer.summary.bar_axes.get_yticklabels()
    assert [name.get_text() for name in names] == ["class0", "class1", "class2", "all"]
    assert [name.get_color() for name in names] == [line.get_color() for line in explorer.summary.pe_lines] + ["k"]


def test_the_difference_is_drawn_over_a_visible_symmetric_range():
    from pescore_nb.explorer.render import difference
    reference = np.zeros((4, 4))
    candidate = np.full((4, 4), 0.08)  # a small drift: +-1 would draw it nearly white
    red = difference(reference, candidate)[0, 0].astype(int)
    assert red[0] - red[2] > 100  # clearly red, over the range +-0.1


def test_the_ratio_slider_gives_each_stop_room():
    ds = results_dataset(n_images=6, size=8, ratios=tuple(np.round(np.arange(0.1, 1.0, 0.1), 1)))
    slider = explore(ds).controls.ratio
    assert int(slider.layout.width.removesuffix("px")) >= 40 * len(slider.options)


def test_a_layer_whose_maps_ignore_the_weights_is_flagged_and_the_twin_is_a_scale_not_a_pass_mark():
    randomised = schema.RANDOMISED_PREFIX + "features.3"
    flagged = results_dataset(n_images=30, size=16, ratios=(0.02, 0.6),
                              controls={schema.CONTROL_FINETUNE: 0.0, schema.CONTROL_TWIN: 0.01, randomised: 0.05})
    assert pescore_nb.score(flagged).sel(model=randomised, layer="features.3").item() > 0.3  # ignores the weights
    shown = explore(flagged).verdict.value
    assert (f"color:{wording.STATE_COLOURS['not assessable']};font-size:15px' title='the evidence cannot carry a "
            "verdict either way; the sentence says why and what to do'>? trusted by the rule, but this layer is "
            "flagged</b>") in shown  # one state: never a green "trusted" above a red "flagged"
    assert "its maps cannot carry a verdict (randomised copy&#x27;s PE above 0.3" in shown
    assert "judge the candidates at another layer or with another CAM method" in shown
    assert wording.STATE_COLOURS["trusted"] not in shown and "✔" not in shown
    far_twin = results_dataset(n_images=30, size=16, ratios=(0.02, 0.6),
                               controls={schema.CONTROL_FINETUNE: 0.0, schema.CONTROL_TWIN: 0.9, randomised: 3.0})
    pe = pescore_nb.score(far_twin).sel(layer="features.3", cam="gradcam++")
    twin = pe.sel(model=schema.CONTROL_TWIN)
    assert twin < 0.5 and twin - pe.sel(model=randomised) > 0.1  # under the old floor of 0.5, above the randomised copy
    shown = explore(far_twin).verdict.value
    assert "flagged" not in shown  # a twin far away is a scale: retraining moves these maps that far
    assert f"(control:twin) scores {float(twin):.2f} at features.3" in shown


SEEDS = (0, 1, 2)


@pytest.fixture
def seeded():
    """Three seeds, each with its own maps (a blob shifted by the seed), so a panel tells which it shows."""
    ds = seeded_results_dataset(seeds=SEEDS, n_images=30, size=16).copy(deep=True)
    for seed in SEEDS[1:]:
        members = [name for name in ds.model.values.tolist() if name.endswith(f"/seed{seed}")]
        ds[schema.HEATMAP].loc[{"model": members}] = np.roll(ds[schema.HEATMAP].sel(model=members).values,
                                                             4 * seed, axis=-1)
    return ds


def class_weighted(ds, models: list[str], layer: str = "features.3") -> np.ndarray:
    """The PE ``(models,)`` at ``layer``, from ``ds.pe`` and the support class weights."""
    labels = ds[schema.LABEL].values
    pe = ds[schema.PE].sel(model=models, layer=layer).isel(cam=0).values
    return sum((labels == k).mean() * pe[:, labels == k].mean(axis=1) for k in np.unique(labels))


def test_the_seed_picker_offers_the_mean_and_each_seed_and_hides_with_one_seed(seeded, ds):
    picker = explore(seeded).controls.seed
    assert picker.options == (("mean of 3 seeds", "mean"), ("seed 0", 0), ("seed 1", 1), ("seed 2", 2))
    assert picker.layout.display != "none"
    assert explore(ds).controls.seed.layout.display == "none"


def test_with_the_mean_the_verdict_is_the_groups_and_the_maps_one_seeds(seeded):
    explorer = explore(seeded)
    c = explorer.controls
    c.pruner.value, c.ratio.value = "l2", 0.6
    members = [f"l2@0.60/seed{seed}" for seed in SEEDS]
    pe = class_weighted(seeded, members)
    verdict = explorer.verdict.value
    assert "· L2-norm filter @ 0.60 · mean of 3 seeds" in verdict
    assert f"model PE (class-weighted) {pe.mean():.3f} ({pe.min():.3f}–{pe.max():.3f})" in verdict
    assert "the bound covers the test images and 3 training seeds" in verdict
    bound = float(pescore_nb.assess(seeded)["bound"].sel(model="l2@0.60", layer="features.3").item())
    assert f"upper bound of its gap to control:finetune {bound:.3f}" in verdict
    twin = class_weighted(seeded, [schema.CONTROL_TWIN])[0]
    assert f"(control:twin) scores {twin:.2f} at features.3" in verdict
    if pe.mean() < twin:
        assert "L2-norm filter @ 0.60 scores below it: it has drifted as far as retraining" in verdict
    assert "seed 0" in explorer.captions.candidate.value and "<b>l2@0.60/seed0</b>" in explorer.readout.value
    where = {schema.MODEL: "l2@0.60/seed0", schema.LAYER: "features.3", schema.CAM: "gradcam++",
             schema.IMAGE: int(c.image.value)}
    assert readout_numbers(explorer)["pe"] == pytest.approx(float(seeded.pe.sel(where)), abs=5e-5)
    threshold = pescore_nb.PEConfig.from_attrs(seeded.attrs).iou_threshold
    reference = seeded.heatmap.sel({**where, schema.MODEL: schema.REFERENCE}).values >= threshold
    candidate = seeded.heatmap.sel(where).values >= threshold
    assert np.array_equal(np.all(pixels(explorer.panels.masks.value) == 255, axis=-1), reference & candidate)
    summary = pescore_nb.score(seeded).sel(layer="features.3", cam="gradcam++")
    means = [class_weighted(seeded, [f"l2@{r:.2f}/seed{s}" for s in SEEDS]).mean() for r in (0.3, 0.6)]
    np.testing.assert_allclose(explorer.summary.pe_line.get_ydata()[1:], means)
    assert summary.sel(model="reference") == pytest.approx(explorer.summary.pe_line.get_ydata()[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_picking_a_seed_shows_that_seeds_verdict_maps_and_numbers(seeded, seed):
    explorer = explore(seeded)
    c = explorer.controls
    c.pruner.value, c.ratio.value = "random", 0.3
    c.seed.value = seed
    alone = pescore_nb.assess(structure.one_seed(seeded, seed)).sel(model="random@0.30", layer="features.3").squeeze()
    verdict = explorer.verdict.value
    assert f"{wording.STATE_MARKS[str(alone.verdict.item())]} {alone.verdict.item()}</b>" in verdict
    assert f"· random filter @ 0.30 · seed {seed}" in verdict
    pe = class_weighted(seeded, [f"random@0.30/seed{seed}"])[0]
    assert f"model PE (class-weighted) {pe:.3f}, upper bound of its gap to control:finetune {float(alone.bound):.3f}" \
        in verdict
    assert f"it is what fine-tuning seed {seed} alone gives" in verdict
    control = class_weighted(seeded, [f"{schema.CONTROL_FINETUNE}/seed{seed}"])[0]
    assert f"control:finetune model PE (class-weighted) <b>{control:.3f}</b>" in verdict
    assert f"<b>random@0.30/seed{seed}</b>" in explorer.readout.value
    assert f"seed {seed}" in explorer.captions.candidate.value
    where = {schema.MODEL: f"random@0.30/seed{seed}", schema.LAYER: "features.3", schema.CAM: "gradcam++",
             schema.IMAGE: int(c.image.value)}
    shown = readout_numbers(explorer)
    for name in ("ssim", "iou", "conf", "pe"):
        assert shown[name] == pytest.approx(float(seeded[name].sel(where)), abs=5e-5), name
    threshold = pescore_nb.PEConfig.from_attrs(seeded.attrs).iou_threshold
    both = ((seeded.heatmap.sel({**where, schema.MODEL: schema.REFERENCE}).values >= threshold)
            & (seeded.heatmap.sel(where).values >= threshold))
    assert np.array_equal(np.all(pixels(explorer.panels.masks.value) == 255, axis=-1), both)
    c.seed.value = "mean"  # and back: the group's verdict again
    assert "· random filter @ 0.30 · mean of 3 seeds" in explorer.verdict.value


def test_the_verdict_box_names_not_assessable_and_why():
    ds = seeded_results_dataset(seeds=SEEDS, ratios=(0.02, 0.6), n_images=30, size=16)
    ds = ds.drop_sel(model=["l2@0.02/seed2", "l2@0.60/seed2", f"{schema.CONTROL_FINETUNE}/seed2"])
    explorer = explore(ds, max_accuracy_drop=1.0)  # only PE decides here
    c = explorer.controls
    assert "✔ trusted</b> · L2-norm filter @ 0.02 · mean of 2 seeds" in explorer.verdict.value
    c.pruner.value = "random"  # seed 2 has no control of its own
    verdict = explorer.verdict.value
    assert "? not assessable</b> · random filter @ 0.02 · mean of 3 seeds" in verdict
    assert "no control of seed 2" in verdict and wording.STATE_COLOURS["not assessable"] in verdict


def test_a_pruner_with_no_trusted_ratio_is_never_shown_in_the_pass_colour():
    explorer = explore(one_pruner_trusted_the_other_not())
    assert "trusted up to ratio 0.02" in explorer.verdict.value  # l2: the other pruner has a trusted ratio
    explorer.controls.pruner.value = "random"
    verdict = explorer.verdict.value
    fail = wording.STATE_COLOURS["not trusted"]
    assert (f"<b class='pescore-ratio-verdict' style='color:{fail}'>none trusted</b> (the smallest ratio 0.02 "
            "fails on PE and accuracy)") in verdict
    assert f"style='color:{fail};font-size:15px'" in verdict and "✘ not trusted</b>" in verdict
    assert "accuracy drop 8.3 points &gt; budget 2 points" in verdict
    assert "trusted up to" not in verdict and wording.STATE_COLOURS["trusted"] not in verdict
    assert "0.00" not in verdict


def text_boxes(figure) -> list:
    """``(text, window extent)`` of every visible, non-empty text of a drawn ``figure``."""
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    return [(text, text.get_window_extent(renderer)) for text in figure.findobj(matplotlib.text.Text)
            if text.get_visible() and text.get_text().strip()]


def drawn_text_boxes(figure) -> list:
    """:func:`text_boxes` less the tick labels beyond an axis' view limits (matplotlib keeps, never draws them)."""
    boxes, hidden = text_boxes(figure), set()  # drawn first: the ticks take their places
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            drawn = {id(tick.label1) for tick in axis.get_major_ticks() if low <= tick.get_loc() <= high}
            hidden |= {id(tick.label1) for tick in axis.majorTicks} - drawn  # the pool holds spare ticks too
    return [(text, box) for text, box in boxes if id(text) not in hidden]


@pytest.mark.parametrize("limit", [1.0, 0.5, 0.2, 0.1])
def test_the_difference_colour_bar_label_is_inside_the_figure_and_clear_of_the_ticks(limit):
    figure = colorbar_figure(DIFFERENCE_COLORMAP, -limit, limit, "Δ CAM", 140)  # the explorer's panel height
    boxes = text_boxes(figure)
    label = next(box for text, box in boxes if text.get_text() == "Δ CAM")
    ticks = [(text.get_text(), box) for text, box in boxes if text.get_text() != "Δ CAM"]
    signed = f"{limit:.2g}"
    assert [text for text, _ in ticks] == [f"−{signed}", "0", f"+{signed}"]
    for text, box in boxes:
        assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1), text.get_text()
        assert text.get_fontsize() * figure.dpi / 72 >= 12  # px
    for text, box in ticks:
        assert not label.overlaps(box), f"the label overlaps the tick {text}"
    assert not any(a.overlaps(b) for (_, a), (_, b) in zip(ticks, ticks[1:]))
    side = colorbar_figure(DIFFERENCE_COLORMAP, -limit, limit, "Δ CAM", 112)  # the side-by-side's smaller bar
    assert all(side.bbox.contains(box.x0, box.y0) and side.bbox.contains(box.x1, box.y1)
               for _, box in text_boxes(side))


def test_the_summarys_text_is_12_px_or_more_and_inside_it(ds):
    figure = explore(ds).summary.figure
    texts = text_boxes(figure)
    assert len(texts) > 10
    assert all(text.get_fontsize() * figure.dpi / 72 >= 12 for text, _ in texts)
    drawn = figure.get_tightbbox(figure.canvas.get_renderer()).transformed(figure.dpi_scale_trans)  # px
    assert drawn.x0 >= 0 and drawn.y0 >= 0 and drawn.x1 <= figure.bbox.x1 and drawn.y1 <= figure.bbox.y1


SHAPES = ["circle", "square", "triangle", "star", "cross", "ring"]
DIGITS = [str(k) for k in range(10)]
LONG = "a class name far too long to stand beside a bar"  # cut, with an ellipsis (the class picker has it whole)


MODELS = {"by ratio": {"max_ratio": 0.7}, "three models": {"x_labels": ["reference", "mine-medium-wide", "theirs"]},
          "nine models": {"x_labels": ["reference"] + [f"model-{k}" for k in range(8)]}}


@pytest.mark.parametrize("mode", list(MODELS))
@pytest.mark.parametrize("names", [SHAPES, DIGITS, ["a", "b", "c"], [f"class{k}" for k in range(16)], [LONG, "short"]])
def test_every_text_of_the_summary_is_legible_whole_and_clear_of_the_others(names, mode):
    summary = SummaryFigure(names, **MODELS[mode])
    figure = summary.figure
    boxes = drawn_text_boxes(figure)
    for i, (text, box) in enumerate(boxes):
        assert text.get_fontsize() * figure.dpi / 72 >= 12, text.get_text()
        assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1), text.get_text()
        assert not any(box.overlaps(other) for _, other in boxes[i + 1:]), f"{text.get_text()} overlaps another text"
    ticks = [text for text, _ in boxes if text in summary.bar_axes.get_yticklabels()]
    assert len(ticks) == len(names) + 1
    for name, text in zip(names + ["all"], ticks):
        shown = text.get_text()
        assert shown == name if name != LONG else (shown.endswith("…") and LONG.startswith(shown[:-1]))
        box, bars = text.get_window_extent(), summary.bar_axes.get_window_extent()
        assert not box.overlaps(summary.curve_axes.get_window_extent()) and box.x1 <= bars.x0
    assert summary.pixels[1] >= 60 + len(ticks) * 16  # the figure grew instead of squeezing the rows
    under = [text.get_text() for text in summary.curve_axes.get_xticklabels()] if "x_labels" in MODELS[mode] else []
    assert under in ([], ["reference", "mine-med…", "theirs"], ["ref", *map(str, range(1, 9))])
