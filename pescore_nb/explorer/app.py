"""The explorer app: ipywidgets controls over a results Dataset, panels redrawn as JPEG or PNG images.

Every control change calls :meth:`Explorer.redraw`, which recomputes only the panels whose
inputs changed (each panel remembers the key it was drawn for).
"""
from __future__ import annotations

from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
import xarray as xr

from .. import schema
from .catalog import Catalog
from .render import difference, encode, masks, overlay
from .summary import SummaryFigure

ALL = "all"
PANELS = ("picture", "reference", "candidate", "difference", "masks", "side_a", "side_b", "side_difference")
PANEL_FORMATS = {"masks": "png"}  # the others are photo-like: JPEG encodes ten times faster
NO_MODEL_GREY = 200


class Explorer(widgets.VBox):
    """PE-score of a results Dataset, sliced by pruner, ratio, layer, CAM method, class and image.

    ``controls``: ``pruner``, ``ratio``, ``compare`` (the second pruner of the side-by-side view),
    ``layer``, ``method``, ``label`` (a class, or ``"all"``) and ``image`` (positions, lowest PE first).
    ``panels``: Image widgets ``picture``, ``reference``, ``candidate``, ``difference``, ``masks``,
    the side-by-side ``side_a`` (selected pruner), ``side_b`` (compared pruner), ``side_difference``
    (B - A), and ``summary``; ``readout``: the image's numbers (HTML).
    Reads only the Dataset; works on one opened lazily from disk.
    """

    def __init__(self, ds: xr.Dataset, panel_width: int = 170):
        self.catalog = catalog = Catalog(ds)
        first = catalog.pruners[0]
        others = [p for p in catalog.pruners if p != first]
        self.controls = SimpleNamespace(
            pruner=widgets.Dropdown(options=catalog.pruners, description="pruner"),
            ratio=widgets.SelectionSlider(options=_ratio_options(catalog.ratios[first]), description="ratio"),
            compare=widgets.Dropdown(options=catalog.pruners, value=(others or [first])[0],
                                     description="side by side with"),
            layer=widgets.Dropdown(options=list(zip(catalog.layers, range(len(catalog.layers)))),
                                   description="layer"),
            method=widgets.Dropdown(options=list(zip(catalog.methods, range(len(catalog.methods)))),
                                    description="CAM"),
            label=widgets.Dropdown(options=[("all classes", ALL)] + [(catalog.class_names[k], int(k))
                                                                     for k in catalog.classes],
                                   description="class"),
            image=widgets.Dropdown(options=[], description="image", layout={"width": "340px"}))
        for control in vars(self.controls).values():
            control.style.description_width = "initial"
            if control is not self.controls.image:
                control.layout.width = "250px"
        self.controls.ratio.add_class("pescore-ratio")
        self.panels = SimpleNamespace(**{name: widgets.Image(format=PANEL_FORMATS.get(name, "jpeg"),
                                                             layout={"width": f"{panel_width}px"})
                                         for name in PANELS},
                                      summary=widgets.Image(format="png"))
        for name in PANELS:
            getattr(self.panels, name).add_class(f"pescore-{name.replace('_', '-')}")
        self.captions = SimpleNamespace(**{name: widgets.HTML() for name in PANELS + ("summary",)})
        self.readout = widgets.HTML()
        self.readout.add_class("pescore-readout")
        self.summary = SummaryFigure([catalog.class_names[k] for k in catalog.classes],
                                     max(max(r) for r in catalog.ratios.values()))
        self._drawn: dict[str, tuple] = {}
        self._quiet = False
        for name, control in vars(self.controls).items():
            control.observe(lambda change, name=name: self._changed(name), "value")
        super().__init__(children=self._layout())
        self.add_class("pescore-explorer")
        self._sync_picker()
        self.redraw()

    def redraw(self) -> None:
        """Bring every panel, the readout and the summary up to date with the controls."""
        catalog, c = self.catalog, self.controls
        layer, method, image, ratio = c.layer.value, c.method.value, c.image.value, c.ratio.value
        model = catalog.model_at(c.pruner.value, ratio)
        compared = catalog.model_at(c.compare.value, ratio)
        maps, picture = catalog.heatmaps(layer, method, image), catalog.picture(image)
        threshold = catalog.config.iou_threshold
        at = f"{ratio:.2f}"
        self._draw("picture", (image,), lambda: picture, "input")
        self._draw("reference", (layer, method, image), lambda: overlay(picture, maps[0]), "reference")
        self._draw("candidate", (model, layer, method, image), lambda: overlay(picture, maps[model]),
                   f"{c.pruner.value} @ {at}")
        self._draw("difference", (model, layer, method, image), lambda: difference(maps[0], maps[model]),
                   "candidate − reference")
        self._draw("masks", (model, layer, method, image, threshold),
                   lambda: masks(maps[0], maps[model], threshold),
                   f"≥ {threshold:g}: <span style='color:#e63c3c'>ref</span>, "
                   "<span style='color:#3c78f0'>cand</span>, both")
        values = catalog.readout(model, layer, method, image)
        self.panels.side_a.value = self.panels.candidate.value  # the same picture, side by side with B
        self.captions.side_a.value = f"<small>{c.pruner.value} @ {at} · PE {values[schema.PE]:.4f}</small>"
        if compared is None:
            blank = np.full_like(picture, NO_MODEL_GREY)
            self._draw("side_b", (None, ratio), lambda: blank, f"no {c.compare.value} model @ {at}")
            self._draw("side_difference", (None, ratio), lambda: blank, "")
        else:
            compared_pe = catalog.readout(compared, layer, method, image)[schema.PE]
            self._draw("side_b", (compared, layer, method, image), lambda: overlay(picture, maps[compared]),
                       f"{c.compare.value} @ {at} · PE {compared_pe:.4f}")
            self._draw("side_difference", (model, compared, layer, method, image),
                       lambda: difference(maps[model], maps[compared]), f"{c.compare.value} − {c.pruner.value}")
        self.readout.value = self._readout_html(model, image, values)
        self._draw_summary(model, compared, layer, method)

    def _changed(self, control: str) -> None:
        if self._quiet:
            return
        if control == "pruner":
            self._sync_ratio()
        self._sync_picker()
        self.redraw()

    def _sync_ratio(self) -> None:
        """Offer the selected pruner's ratios; keep the ratio nearest to the current one."""
        slider, ratios = self.controls.ratio, self.catalog.ratios[self.controls.pruner.value]
        nearest = min(ratios, key=lambda r: abs(r - slider.value))
        self._quietly(slider, _ratio_options(ratios), nearest)

    def _sync_picker(self) -> None:
        """List the images (of the selected class) lowest PE first; keep the image if it is listed."""
        catalog, c = self.catalog, self.controls
        model = catalog.model_at(c.pruner.value, c.ratio.value)
        label = None if c.label.value == ALL else c.label.value
        key = (model, c.layer.value, c.method.value, label)
        if self._drawn.get("picker") == key:
            return
        self._drawn["picker"] = key
        order = catalog.worst_first(model, c.layer.value, c.method.value, label)
        pe = catalog.small[schema.PE].values[model, c.layer.value, c.method.value]
        names = catalog.small[schema.IMAGE].values
        options = [(f"PE {pe[i]:.3f} · image {names[i]} ({catalog.class_names[catalog.labels[i]]})", int(i))
                   for i in order]
        keep = c.image.value if c.image.value in order else int(order[0])
        self._quietly(c.image, options, keep)

    def _quietly(self, control: widgets.ValueWidget, options: list, value) -> None:
        """Replace a control's options and value without triggering a redraw per step."""
        self._quiet = True
        try:
            control.options = options
            control.value = value
        finally:
            self._quiet = False

    def _draw(self, name: str, key: tuple, rgb, caption: str) -> None:
        """Encode panel ``name`` from ``rgb() -> (H, W, 3)`` unless it was drawn for ``key`` already."""
        if self._drawn.get(name) != key:
            self._drawn[name] = key
            panel = getattr(self.panels, name)
            panel.value = encode(rgb(), panel.format)
        getattr(self.captions, name).value = f"<small>{caption}</small>"

    def _draw_summary(self, model: int, compared: int | None, layer: int, method: int) -> None:
        catalog, c, summary = self.catalog, self.controls, self.summary
        label = c.label.value
        key = (c.pruner.value, c.compare.value, model, compared, layer, method, label)
        if self._drawn.get("summary") == key:
            return
        self._drawn["summary"] = key
        summary.set_curves(*catalog.curve(c.pruner.value, layer, method))
        summary.set_ratio(c.ratio.value)
        summary.set_bars(self._bar_heights(model, layer, method), self._bar_heights(compared, layer, method))
        self.captions.summary.value = (
            f"<small>left: {c.pruner.value} · {catalog.layers[layer]} · {catalog.methods[method]}, PE (solid) "
            f"and accuracy (dashed) per class vs ratio · right: PE @ {c.ratio.value:.2f}, {c.pruner.value} "
            f"(solid) vs {c.compare.value} (hatched)</small>")
        summary.highlight(None if label == ALL else catalog.classes.index(label))
        self.panels.summary.value = summary.png()

    def _bar_heights(self, model: int | None, layer: int, method: int) -> np.ndarray:
        """PE per class then class-weighted ``(K + 1,)``; NaN when there is no such model."""
        if model is None:
            return np.full(len(self.catalog.classes) + 1, np.nan)
        return np.append(self.catalog.pe_by_class[model, layer, method], self.catalog.pe_overall[model, layer, method])

    def _readout_html(self, model: int, image: int, values: dict) -> str:
        catalog = self.catalog
        names = catalog.class_names
        warning = (" · <b style='color:#c00'>degenerate map (constant CAM): SSIM and IoU say nothing</b>"
                   if values["degenerate"] else "")
        return (f"<b>{catalog.name(model)}</b> · image {catalog.small[schema.IMAGE].values[image]} "
                f"({names[values['label']]}): "
                f"SSIM <b>{values[schema.SSIM]:.4f}</b> · IoU <b>{values[schema.IOU]:.4f}</b> · "
                f"Conf <b>{values[schema.CONF]:.4f}</b> · PE <b>{values[schema.PE]:.4f}</b><br>"
                f"p(target): reference {values['ref_prob']:.3f}, candidate {values['cand_prob']:.3f} · "
                f"predicted: reference {names.get(values['ref_pred'], values['ref_pred'])}, "
                f"candidate {names.get(values['cand_pred'], values['cand_pred'])}{warning}")

    def _layout(self) -> list:
        c, p, captions = self.controls, self.panels, self.captions

        def panel(name):
            return widgets.VBox([getattr(captions, name), getattr(p, name)], layout={"flex": "0 0 auto"})

        wrap = {"flex_flow": "row wrap"}

        return [widgets.HBox([c.pruner, c.ratio, c.compare], layout=wrap),
                widgets.HBox([c.layer, c.method, c.label, c.image], layout=wrap),
                widgets.HBox([panel(name) for name in PANELS[:5]], layout=wrap),
                self.readout,
                widgets.HBox([widgets.VBox([widgets.HTML("<b>side by side</b>"),
                                            widgets.HBox([panel(name) for name in PANELS[5:]])]),
                              widgets.VBox([captions.summary, p.summary], layout={"flex": "0 0 auto"})],
                             layout=wrap)]


def _ratio_options(ratios: tuple) -> list:
    return [(f"{ratio:.2f}", ratio) for ratio in ratios]


def explore(ds: xr.Dataset) -> Explorer:
    """An interactive explorer of a results Dataset (display it in JupyterLab); see :class:`Explorer`."""
    return Explorer(ds)
