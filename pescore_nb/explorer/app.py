"""The explorer app: ipywidgets controls over a results Dataset, panels redrawn as JPEG or PNG images.

Every control change calls :meth:`Explorer.redraw`, which recomputes only the panels whose
inputs changed (each panel remembers the key it was drawn for). With several fine-tuning seeds a seed
picker chooses between each group's mean over its seeds and one seed alone. The layout fits a 1440x900
browser window with JupyterLab's side bar open (its default): at most :data:`MAX_WIDTH` px wide, in
rows of controls (the seed picker at the end of the first), the five map panels with their colour
bars, the readout, the trust verdict beside the side-by-side view, and the summary, under 780 px
tall; every text is at least 12 px. A narrower window wraps it row by row.
"""
from __future__ import annotations

import html
import re
from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
import xarray as xr

from .. import schema, wording
from ..plot import CAM_COLORMAP, DIFFERENCE_COLORMAP, cam_name, control_name, difference_limit, pruner_name
from .catalog import Catalog, Results
from .render import colorbar, difference, encode, masks, overlay
from .summary import SummaryFigure

ALL = "all"
MEAN = "mean"  # the seed picker's choice: each group's mean over its seeds
PANELS = ("picture", "reference", "candidate", "difference", "masks", "side_a", "side_b", "side_difference")
PANEL_FORMATS = {"masks": "png"}  # the others are photo-like: JPEG encodes ten times faster
NO_MODEL_GREY = 200
PIXELS_PER_STOP = 40  # the ratio slider gives each stop this many pixels: easy to hit with a mouse
MAX_WIDTH = 1080  # px: at most (a notebook's output area is about 960 px at 1440 px with the side bar open)
TEXT_PX, HEADLINE_PX = 13, 15  # the explorer's text sizes (never below 12 px)


class Explorer(widgets.VBox):
    """PE-score of a results Dataset, sliced by pruner, ratio, layer, CAM method, class and image.

    ``controls``: ``pruner``, ``ratio`` (a slider, one stop per ratio of the pruner), ``compare``
    (the other pruner of the side-by-side view; never the selected one, hidden when there is only
    one), ``layer``, ``cam``, ``label`` (a class, or ``"all"``) and ``image`` (positions, lowest PE
    first), ``seed`` (``"mean"``: each group's mean over its fine-tuning seeds, with one seed's maps,
    the image list and the readout; or one seed: everything as that seed alone gives; hidden when
    each group is one model). When the candidates have no ratios (models scored with ``evaluate``,
    outside a sweep) ``pruner`` and ``ratio`` give way to ``model``, a picker of the candidates and controls, and
    ``compare`` picks another model. ``worst`` selects the lowest-PE image of the list.
    ``panels``: Image widgets ``picture``, ``reference``, ``candidate``, ``difference``, ``masks``,
    the side-by-side ``side_a`` (selected), ``side_b`` (compared), ``side_difference`` (B - A), and
    ``summary``; ``colorbars``: ``cam``, ``difference``, ``side_difference``; ``readout``: the
    image's numbers; ``verdict``: the trust rule on the selected group in one of three states, what
    its bound covers, the twin's PE as a scale, and the pruner's trusted ratio. ``catalog``: the
    :class:`Catalog` of the chosen seed (each made once, when first chosen).
    It opens on the first pruner's lowest ratio and the image nearest the median PE.
    Reads only the Dataset; works on one opened lazily from disk. ``rule`` keywords go to
    :func:`pescore_nb.trust.assess`.
    """

    def __init__(self, ds: xr.Dataset, panel_width: int = 140, side_width: int = 112, **rule):
        self._results, self._rule = Results(ds), rule
        self._catalogs = {MEAN: Catalog(self._results, **rule)}
        self.catalog = catalog = self._catalogs[MEAN]
        self.panel_width, self.side_width = panel_width, side_width
        self.by_ratio = catalog.has_ratios
        label = widgets.Dropdown(options=[("all classes", ALL)] + [(catalog.class_names[k], int(k))
                                                                   for k in catalog.classes],
                                 description="class", layout={"width": "170px"})
        common = dict(
            layer=widgets.Dropdown(options=list(zip(catalog.layers, range(len(catalog.layers)))),
                                   description="layer", layout={"width": "190px"}),
            cam=widgets.Dropdown(options=[(cam_name(name), k) for k, name in enumerate(catalog.cams)],
                                 description="CAM", layout={"width": "160px"}),
            label=label,
            image=widgets.Dropdown(options=[], description="image", layout={"width": "300px"}),
            seed=widgets.Dropdown(options=_seed_options(self._results.seeds), value=MEAN, description="seeds",
                                  layout={"width": "170px"}))
        if self.by_ratio:
            first = catalog.pruners[0]
            ratios = catalog.ratios[first]
            self.controls = SimpleNamespace(
                pruner=widgets.Dropdown(options=[(pruner_name(p), p) for p in catalog.pruners], value=first,
                                        description="pruner", layout={"width": "200px"}),
                ratio=widgets.SelectionSlider(options=_ratio_options(ratios), value=ratios[0], description="ratio",
                                              layout={"width": _slider_width(ratios)}),
                compare=widgets.Dropdown(options=self._compare_options(first), description="side by side with",
                                         layout={"width": "250px"}),
                **common)
        else:
            first = catalog.pickable[0]
            self.controls = SimpleNamespace(
                model=widgets.Dropdown(options=[(self._model_label(m), m) for m in catalog.pickable], value=first,
                                       description="model", layout={"width": "330px"}),
                compare=widgets.Dropdown(options=self._compare_options(first), description="side by side with",
                                         layout={"width": "360px"}),
                **common)
        for name, control in vars(self.controls).items():
            control.style.description_width = "initial"
            control.add_class(f"pescore-{name}")  # pescore-pruner, pescore-ratio, pescore-seed, ...
        self.worst = widgets.Button(description="lowest PE", tooltip="show the image with the lowest PE of the list",
                                    layout={"width": "90px"})
        self.worst.on_click(lambda _: self._show_worst())
        self.panels = SimpleNamespace(
            **{name: widgets.Image(format=PANEL_FORMATS.get(name, "jpeg"),
                                   layout=_square(side_width if name.startswith("side") else panel_width))
               for name in PANELS},
            summary=widgets.Image(format="png"))
        for name in PANELS + ("summary",):
            getattr(self.panels, name).add_class(f"pescore-{name.replace('_', '-')}")
        self.colorbars = SimpleNamespace(
            cam=widgets.Image(format="png", value=colorbar(CAM_COLORMAP, 0.0, 1.0, "CAM", panel_width),
                              layout={"width": "58px", "height": f"{panel_width}px"}),
            difference=widgets.Image(format="png", layout={"width": "58px", "height": f"{panel_width}px"}),
            side_difference=widgets.Image(format="png", layout={"width": "58px", "height": f"{side_width}px"}))
        for name, bar in vars(self.colorbars).items():
            bar.add_class("pescore-colorbar")
            bar.add_class(f"pescore-colorbar-{name.replace('_', '-')}")
        self.captions = SimpleNamespace(**{name: widgets.HTML() for name in PANELS + ("summary",)})
        self.readout = widgets.HTML(layout={"width": "100%"})
        self.readout.add_class("pescore-readout")
        self.verdict = widgets.HTML(layout={"flex": "1 1 320px", "min_width": "320px", "margin": "0 12px 0 0"})
        self.verdict.add_class("pescore-verdict")
        class_names = [catalog.class_names[k] for k in catalog.classes]
        if self.by_ratio:
            self.summary = SummaryFigure(class_names, max(max(r) for r in catalog.ratios.values()))
        else:
            names = [catalog.name(model) for model in catalog.pickable]
            self.summary = SummaryFigure(class_names, x_labels=["reference", *names])
        width, height = self.summary.pixels
        self.panels.summary.layout = {"width": f"{width}px", "height": f"{height}px", "flex": "0 0 auto"}
        self.captions.summary.layout = {"width": f"{width}px", "height": "20px"}
        self._drawn: dict[str, object] = {}
        self._quiet = False
        for name, control in vars(self.controls).items():
            control.observe(lambda change, name=name: self._changed(name), "value")
        self._side_by_side = widgets.VBox(
            [widgets.HTML(_line("<b>side by side</b> · PE of this image")),
             widgets.HBox([self._panel(name) for name in PANELS[5:]] + [self.colorbars.side_difference],
                          layout={"align_items": "flex-end"})],
            layout={"flex": "0 0 auto"})
        if not self._results.seeds:  # each group is one model: no seed to pick
            self.controls.seed.layout.display = "none"
        if len(self.controls.compare.options) == 0:  # one pruner (or one model): nothing to compare with
            self.controls.compare.layout.display = "none"
            self._side_by_side.layout.display = "none"
        super().__init__(children=self._layout(), layout={"max_width": f"{MAX_WIDTH}px"})
        self.add_class("pescore-explorer")
        self._sync_picker()
        self.redraw()

    # -- what is selected ------------------------------------------------------------------------------
    def selected_model(self) -> int:
        """The position of the model shown as the candidate."""
        c = self.controls
        model = self.catalog.model_at(c.pruner.value, c.ratio.value) if self.by_ratio else c.model.value
        return model  # type: ignore[return-value]  # a ratio on the slider always has a model

    def compared_model(self) -> int | None:
        """The position of the model of the side-by-side view's B; None when there is none."""
        c = self.controls
        if c.compare.value is None:
            return None
        return self.catalog.model_at(c.compare.value, c.ratio.value) if self.by_ratio else c.compare.value

    def redraw(self) -> None:
        """Bring every panel, the readout, the verdict and the summary up to date with the controls."""
        catalog, c = self.catalog, self.controls
        layer, cam, image = c.layer.value, c.cam.value, c.image.value
        model, compared, reference = self.selected_model(), self.compared_model(), catalog.reference
        maps, picture = catalog.heatmaps(layer, cam, image), catalog.picture(image)
        threshold = catalog.config.iou_threshold
        member = catalog.members[model]  # the model whose maps are drawn: panels keep them across seed choices
        self._draw("picture", (image,), lambda: picture, "input")
        self._draw("reference", (layer, cam, image), lambda: overlay(picture, maps[reference]), "reference")
        self._draw("candidate", (member, layer, cam, image), lambda: overlay(picture, maps[model]),
                   self._maps_label(model))
        limit = difference_limit(maps[model] - maps[reference])
        self._draw("difference", (member, layer, cam, image), lambda: difference(maps[reference], maps[model], limit),
                   "candidate − reference")
        self._colorbar("difference", limit)
        self._draw("masks", (member, layer, cam, image, threshold),
                   lambda: masks(maps[reference], maps[model], threshold),
                   f"≥ {threshold:g}: <span style='color:#e63c3c'>ref</span>, "
                   "<span style='color:#3c78f0'>cand</span>, both")
        values = catalog.readout(model, layer, cam, image)
        self.panels.side_a.value = self.panels.candidate.value  # the same picture, side by side with B
        self.captions.side_a.value = _line(f"A · PE {values[schema.PE]:.3f}")  # named in the summary's caption
        if compared is None:
            blank = np.full_like(picture, NO_MODEL_GREY)
            missing = f"no {pruner_name(c.compare.value)} model here" if c.compare.value is not None else ""
            self._draw("side_b", (None, member), lambda: blank, missing)
            self._draw("side_difference", (None, member), lambda: blank, "")
        else:
            compared_pe = catalog.readout(compared, layer, cam, image)[schema.PE]
            compared_member = catalog.members[compared]
            self._draw("side_b", (compared_member, layer, cam, image), lambda: overlay(picture, maps[compared]),
                       f"B · PE {compared_pe:.3f}")
            side_limit = difference_limit(maps[compared] - maps[model])
            self._draw("side_difference", (member, compared_member, layer, cam, image),
                       lambda: difference(maps[model], maps[compared], side_limit), "B − A")
            self._colorbar("side_difference", side_limit)
        self.readout.value = self._readout_html(model, image, values)
        self.verdict.value = self._verdict_html(model, layer, cam)
        self._draw_summary(model, compared, layer, cam)

    # -- reacting to the controls ---------------------------------------------------------------------
    def _changed(self, control: str) -> None:
        if self._quiet:
            return
        if control == "seed":
            self.catalog = self._catalog(self.controls.seed.value)
        if control == "pruner":
            self._sync_ratio()
        if control in ("pruner", "model"):
            self._sync_compare()
        self._sync_picker()
        self.redraw()

    def _catalog(self, choice) -> Catalog:
        """The catalog of a seed picker's ``choice`` (:data:`MEAN` or a seed), made when first chosen."""
        if choice not in self._catalogs:
            self._catalogs[choice] = Catalog(self._results, seed=int(choice), **self._rule)
        return self._catalogs[choice]

    def _sync_ratio(self) -> None:
        """Offer the selected pruner's ratios; keep the ratio nearest to the current one."""
        slider, ratios = self.controls.ratio, self.catalog.ratios[self.controls.pruner.value]
        nearest = min(ratios, key=lambda r: abs(r - slider.value))
        self._quietly(slider, _ratio_options(ratios), nearest)
        slider.layout.width = _slider_width(ratios)

    def _sync_compare(self) -> None:
        """Offer every pruner (or model) but the selected one; keep B unless it became the selected one."""
        c = self.controls
        selected = c.pruner.value if self.by_ratio else c.model.value
        options = self._compare_options(selected)
        values = [value for _, value in options]
        self._quietly(c.compare, options, c.compare.value if c.compare.value in values else
                      (values[0] if values else None))

    def _compare_options(self, selected) -> list:
        catalog = self.catalog
        if self.by_ratio:
            return [(pruner_name(p), p) for p in catalog.pruners if p != selected]
        return [(self._model_label(m), m) for m in catalog.pickable if m != selected]

    def _sync_picker(self) -> None:
        """List the images (of the selected class) lowest PE first; keep the image if it is listed,
        else show the one nearest the list's median PE."""
        catalog, c = self.catalog, self.controls
        model = self.selected_model()
        label = None if c.label.value == ALL else c.label.value
        key = (catalog.members[model], c.layer.value, c.cam.value, label)
        if self._drawn.get("picker") == key:
            return
        self._drawn["picker"] = key
        order = catalog.worst_first(model, c.layer.value, c.cam.value, label)
        pe = catalog.small[schema.PE].values[model, c.layer.value, c.cam.value]
        names = catalog.small[schema.IMAGE].values
        options = [(f"PE {pe[i]:.3f} · image {names[i]} ({catalog.class_names[catalog.labels[i]]})", int(i))
                   for i in order]
        keep = c.image.value if c.image.value in order else catalog.typical(model, c.layer.value, c.cam.value, label)
        self._quietly(c.image, options, keep)

    def _show_worst(self) -> None:
        self.controls.image.value = self.controls.image.options[0][1]

    def _quietly(self, control: widgets.ValueWidget, options: list, value) -> None:
        """Replace a control's options and value without triggering a redraw per step."""
        self._quiet = True
        try:
            control.options = options
            control.value = value
        finally:
            self._quiet = False

    # -- drawing ---------------------------------------------------------------------------------------
    def _draw(self, name: str, key: tuple, rgb, caption: str) -> None:
        """Encode panel ``name`` from ``rgb() -> (H, W, 3)`` unless it was drawn for ``key`` already."""
        if self._drawn.get(name) != key:
            self._drawn[name] = key
            panel = getattr(self.panels, name)
            panel.value = encode(rgb(), panel.format)
        getattr(self.captions, name).value = _line(caption)

    def _colorbar(self, name: str, limit: float) -> None:
        if self._drawn.get(f"colorbar-{name}") != limit:
            self._drawn[f"colorbar-{name}"] = limit
            height = self.panel_width if name == "difference" else self.side_width
            getattr(self.colorbars, name).value = colorbar(DIFFERENCE_COLORMAP, -limit, limit, "Δ CAM", height)

    def _draw_summary(self, model: int, compared: int | None, layer: int, cam: int) -> None:
        catalog, c, summary = self.catalog, self.controls, self.summary
        label = c.label.value
        key = (catalog.seed, model, compared, layer, cam, label)
        if self._drawn.get("summary") == key:
            return
        self._drawn["summary"] = key
        verdict = catalog.verdict(model, layer, cam)
        budget = catalog.accuracy[catalog.reference] - verdict["max_accuracy_drop"] if verdict else np.nan
        trust_pe = np.nan
        if verdict:
            trust_pe = verdict["control_pe"] if verdict["rule"] == "control" else verdict["pe_threshold"]
        if self.by_ratio:
            pruner = c.pruner.value
            summary.set_curves(*catalog.curve(pruner, layer, cam))
            summary.set_ratio(c.ratio.value)
            trusted = catalog.trusted(pruner, layer, cam)
            summary.set_trust(trust_pe, budget, trusted["ratio"] if trusted else None)
            where = f"{pruner_name(pruner)} · {catalog.layers[layer]} · {cam_name(catalog.cams[cam])}"
            at = f"ratio {c.ratio.value:.2f}"
        else:
            models = [catalog.reference] + catalog.pickable
            summary.set_curves(*catalog.curve_of(models, layer, cam, np.arange(len(models))))
            summary.set_ratio(models.index(model))
            summary.set_trust(trust_pe, budget, None)
            where = f"every model · {catalog.layers[layer]} · {cam_name(catalog.cams[cam])}"
            at = "this model"
        summary.set_bars(self._bar_heights(model, layer, cam), self._bar_heights(compared, layer, cam))
        compared_name = self._model_label(compared) if compared is not None else "none"
        self.captions.summary.value = _line(f"<b>{where}</b> · bars at {at}: solid {self._model_label(model)}, "
                                            f"hatched {compared_name}")
        summary.highlight(None if label == ALL else catalog.classes.index(label))
        self.panels.summary.value = summary.png()

    def _bar_heights(self, model: int | None, layer: int, cam: int) -> np.ndarray:
        """PE per class then class-weighted ``(K + 1,)``; NaN when there is no such model."""
        if model is None:
            return np.full(len(self.catalog.classes) + 1, np.nan)
        return np.append(self.catalog.pe_by_class[model, layer, cam], self.catalog.pe_overall[model, layer, cam])

    def _model_label(self, model: int) -> str:
        catalog = self.catalog
        name = catalog.name(model)
        if catalog.role(model) == schema.CONTROL:
            return control_name(name)
        if self.by_ratio and catalog.role(model) == schema.CANDIDATE:
            ratio = float(catalog.small[schema.RATIO].values[model])
            return f"{pruner_name(catalog.pruner(model))} @ {ratio:.2f}"
        return name

    def _maps_label(self, model: int) -> str:
        """The group whose maps are drawn, and their seed when it has several: ``"L2-norm filter @ 0.30 · seed 0"``."""
        seed = self.catalog.member_seed(model)
        return self._model_label(model) + ("" if seed is None else f" · seed {seed}")

    def _readout_html(self, model: int, image: int, values: dict) -> str:
        """The displayed image's numbers (:data:`wording.IMAGE_PE`, never the model's), and a note only when
        the pair shown (the reference's map and the candidate's) is degenerate."""
        catalog = self.catalog
        names = catalog.class_names
        warning = ""
        if values["degenerate"]:
            which = "the reference's map" if values["reference_degenerate"] else "the candidate's map"
            warning = (f" · <b style='color:{wording.STATE_COLOURS[wording.NOT_ASSESSABLE]}'>{which} is degenerate "
                       "(constant CAM): SSIM and IoU say nothing for this image</b>")
        seed = catalog.member_seed(model)
        averaged = ("" if seed is None or catalog.seed is not None else
                    f" · <i>maps and numbers of seed {seed}; verdict and summary: the mean of "
                    f"{catalog.n_seeds[model]} seeds</i>")
        return (f"<div style='font-size:{TEXT_PX}px;line-height:1.35'>"
                f"<b>{catalog.member_names[model]}</b> · image {catalog.small[schema.IMAGE].values[image]} "
                f"({names[values['label']]}): "
                f"SSIM <b>{values[schema.SSIM]:.4f}</b> · IoU <b>{values[schema.IOU]:.4f}</b> · "
                f"Conf <b>{values[schema.CONF]:.4f}</b> · {wording.IMAGE_PE} <b>{values[schema.PE]:.4f}</b> · "
                f"p(target): reference {values['ref_prob']:.3f}, candidate {values['cand_prob']:.3f} · "
                f"predicted: reference {names.get(values['ref_pred'], values['ref_pred'])}, "
                f"candidate {names.get(values['cand_pred'], values['cand_pred'])}{warning}{averaged}</div>")

    def _verdict_html(self, model: int, layer: int, cam: int) -> str:
        """The trust rule on the selected group at the selected layer and CAM method, in the words and
        colour of :func:`wording.verdict_text` (one state, a flagged layer's included): the headline,
        why, what the bound covers, the control's and the twin's model PE, the pruner's trusted ratio
        (:func:`wording.trusted_ratio_text`) and the rule (:func:`wording.rule_words`)."""
        catalog = self.catalog
        verdict = catalog.verdict(model, layer, cam)
        if verdict is None:
            return _box(wording.STATE_COLOURS[wording.NOT_JUDGED],
                        f"<b>trust rule</b>: {html.escape(catalog.trust_error)}")
        flag = catalog.layer_flag(layer, cam)
        words = wording.verdict_text(verdict, flag)
        seeds = "" if catalog.n_seeds[model] < 2 else (
            f" · mean of {catalog.n_seeds[model]} seeds" if catalog.seed is None else f" · seed {catalog.seed}")
        lines = [f"<b class='pescore-state' style='color:{words.colour};font-size:{HEADLINE_PX}px' "
                 f"title='{html.escape(wording.STATE_MEANINGS[words.state], quote=True)}'>"
                 f"{words.mark} {html.escape(words.headline)}</b> · {self._model_label(model)}{seeds}",
                 html.escape(words.why)]
        if words.state != wording.NOT_JUDGED:
            lines.append(wording.covers_sentence(verdict["n_seeds"], verdict["rule"],
                                                 catalog.seed if catalog.n_seeds[model] > 1 else None))
        twin = wording.twin_scale(verdict["twin_pe"], catalog.layers[layer])
        if verdict["below_twin"] and words.state != wording.NOT_JUDGED:
            twin = f"{twin}; {wording.drifted_clause([self._model_label(model)])}"
        control = (f"{html.escape(verdict['control'])} {wording.MODEL_PE} <b>{verdict['control_pe']:.3f}</b> · "
                   if verdict["rule"] == "control" else "")
        lines.append(control + html.escape(twin if twin.endswith(".") else f"{twin}."))
        if self.by_ratio:
            pruner = self.controls.pruner.value
            trusted = catalog.trusted(pruner, layer, cam)
            if trusted is None:
                lines.append(f"{pruner_name(pruner)}: {html.escape(catalog.trust_error or 'no trusted ratio')}")
            else:
                ratio = wording.trusted_ratio_text(trusted, flag)
                lines.append(f"{pruner_name(pruner)}: <b class='pescore-ratio-verdict' style='color:{ratio.colour}'>"
                             f"{html.escape(ratio.headline)}</b> ({html.escape(ratio.why)})")
        lines.append(f"<details style='color:#555'><summary>the rule</summary>"
                     f"{html.escape(wording.rule_words(catalog.verdicts.attrs))}</details>")  # type: ignore[union-attr]
        return _box(words.colour, "<br>".join(lines))

    # -- layout ----------------------------------------------------------------------------------------
    def _panel(self, name: str) -> widgets.VBox:
        width = self.side_width if name.startswith("side") else self.panel_width
        caption = getattr(self.captions, name)
        caption.layout = {"width": f"{width}px", "height": "20px"}
        return widgets.VBox([caption, getattr(self.panels, name)], layout={"flex": "0 0 auto", "margin": "0 4px 0 0"})

    def _layout(self) -> list:
        """Rows, top to bottom: the selection (the seed picker last), the view controls, the maps with
        their colour bars, the readout, the verdict beside the side-by-side view, the summary."""
        c, p = self.controls, self.panels
        wrap = {"flex_flow": "row wrap", "align_items": "flex-end"}
        seed = [c.seed] if self._results.seeds else []  # one seed: the (hidden) picker stays out of the page
        first_row = ([c.pruner, c.ratio, c.compare] if self.by_ratio else [c.model, c.compare]) + seed
        maps = widgets.HBox([self._panel("picture"), self._panel("reference"), self._panel("candidate"),
                             self.colorbars.cam, self._panel("difference"), self.colorbars.difference,
                             self._panel("masks")], layout=wrap)
        summary = widgets.VBox([self.captions.summary, p.summary], layout={"flex": "0 0 auto"})
        return [widgets.HBox(first_row, layout=wrap),
                widgets.HBox([c.layer, c.cam, c.label, c.image, self.worst], layout=wrap),
                maps,
                self.readout,
                widgets.HBox([self.verdict, self._side_by_side], layout={**wrap, "align_items": "flex-start"}),
                summary]


def _line(content: str) -> str:
    """HTML ``content`` on one line of :data:`TEXT_PX` text, cut with an ellipsis where it overflows
    (the whole text in its tooltip)."""
    plain = html.escape(html.unescape(re.sub(r"<[^>]+>", "", content)), quote=True)
    return (f"<div title=\"{plain}\" style='font-size:{TEXT_PX}px;line-height:20px;white-space:nowrap;"
            f"overflow:hidden;text-overflow:ellipsis'>{content}</div>")


def _box(colour: str, content: str) -> str:
    """The verdict's box: ``content`` beside a bar of the state's ``colour``."""
    return (f"<div style='font-size:{TEXT_PX}px;line-height:1.35;padding-left:6px;border-left:4px solid {colour}'>"
            f"{content}</div>")


def _seed_options(seeds: list[int]) -> list:
    """The seed picker's choices: the mean over ``seeds``, then each seed; one choice when there are none."""
    if not seeds:
        return [("one seed", MEAN)]
    return [(f"mean of {len(seeds)} seeds", MEAN)] + [(f"seed {seed}", seed) for seed in seeds]


def _square(size: int) -> dict:
    return {"width": f"{size}px", "height": f"{size}px"}


def _slider_width(ratios: tuple) -> str:
    return f"{min(640, max(240, PIXELS_PER_STOP * len(ratios) + 90))}px"


def _ratio_options(ratios: tuple) -> list:
    return [(f"{ratio:.2f}", ratio) for ratio in ratios]


def explore(ds: xr.Dataset, **rule) -> Explorer:
    """An interactive explorer of a results Dataset (display it in JupyterLab); see :class:`Explorer`."""
    return Explorer(ds, **rule)
