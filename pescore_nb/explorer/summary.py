"""The explorer's summary figure: PE and accuracy vs ratio per class, and per-class bars at one ratio.

The figure and its artists are made once, at a fixed pixel size (:attr:`SummaryFigure.pixels`,
shown 1:1, never stretched). Setters change the artists' data; :meth:`png` blits them over the
cached background (axes, ticks, labels, legends), so a redraw costs milliseconds. Titles that
change live outside the figure (text is the slowest thing Agg draws).
"""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from .render import encode

BAR_WIDTH = 0.4
DIMMED = 0.2
DPI = 100
FONT = 9  # points: 12.5 px at DPI 100 (the explorer's smallest text is 12 px)
ROW_PX = 16  # px per class row of the bars: 12.5 px names that never touch (the figure grows to give it)
NAME_PX = 110  # px: the widest class name beside the bars; a longer one is cut with an ellipsis
CURVE_PX = 262  # px: the width of the curves' axes
NAMED_MODELS = 6  # models named under the curves (the picker mode); more are numbered
TRUSTED_COLOUR = "#009E73"  # Okabe-Ito bluish green
TRUST_LINE_COLOUR = "#D55E00"  # vermillion


class SummaryFigure:
    """Left: one solid PE line and one dashed accuracy line per class (coloured), the class-weighted
    ones in black, a dotted marker at the current ratio, the trust line (the control's PE, or the
    absolute threshold), the accuracy budget, and a green band over the trusted ratios. Middle: PE
    per class (and "all") at the current ratio, for the selected pruner (solid) and the compared one
    (hatched): horizontal bars, a row per class, its name beside it in the class's colour (the key to
    the colours of the lines, too); ``pixels`` grows in height when :data:`ROW_PX` per row needs it.
    Right: the legend of the line styles. ``x_labels`` (the picker mode, models without ratios) makes
    the x axis categorical: one tick per model, points without lines; up to :data:`NAMED_MODELS` models
    are named (cut to their tick's width), more are numbered as the picker lists them.
    """

    def __init__(self, class_names: list[str], max_ratio: float = 1.0, x_labels: list[str] | None = None,
                 pixels: tuple[int, int] = (780, 240)):
        rows = len(class_names) + 1  # the classes, then all
        self.pixels = width, height = pixels[0], max(pixels[1], 60 + rows * ROW_PX)
        self.figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        renderer = FigureCanvasAgg(self.figure).get_renderer()
        to_figure = lambda left, bottom, w, h: (left / width, bottom / height, w / width, h / height)  # noqa: E731
        self.curve_axes = self.figure.add_axes(to_figure(48, 48, CURVE_PX, height - 60))
        names = [_cut(name, NAME_PX, renderer) for name in list(class_names) + ["all"]]
        bars_left = 330 + max(_text_px(name, renderer) for name in names)  # names right-aligned left of the bars
        self.bar_axes = self.figure.add_axes(to_figure(bars_left, 48, 564 - bars_left, height - 60))
        colors = [f"C{k % 10}" for k in range(len(class_names))]
        categorical = x_labels is not None
        style: dict = {"linestyle": "none"} if categorical else {}

        axes = self.curve_axes
        self.pe_lines = [axes.plot([], [], color=c, marker="o", ms=3, lw=1.5, animated=True, **style)[0]
                         for c in colors]
        dashed = "none" if categorical else "--"
        self.accuracy_lines = [axes.plot([], [], color=c, ls=dashed, lw=1, marker="." if categorical else None,
                                         animated=True)[0] for c in colors]
        self.pe_line = axes.plot([], [], color="k", marker="o", ms=4, lw=2.5, animated=True, **style)[0]
        self.accuracy_line = axes.plot([], [], color="k", ls=dashed, lw=2, marker="D" if categorical else None,
                                       ms=3, animated=True)[0]
        self.marker = axes.axvline(0.0, color="0.35", ls=":", lw=1.5, animated=True)
        self.trust_line = axes.axhline(np.nan, color=TRUST_LINE_COLOUR, lw=1.2, ls="-.", animated=True)
        self.budget_line = axes.axhline(np.nan, color="0.45", lw=1.0, ls=(0, (1, 1)), animated=True)
        self.trusted_span = Rectangle((0.0, 0.0), 0.0, 1.0, transform=axes.get_xaxis_transform(),
                                      color=TRUSTED_COLOUR, alpha=0.15, lw=0, animated=True)
        axes.add_patch(self.trusted_span)
        if x_labels is not None:
            named = len(x_labels) <= NAMED_MODELS
            slot = CURVE_PX / len(x_labels) - 6  # px: a name's room under its tick
            ticks = ([_cut(name, slot, renderer) for name in x_labels] if named
                     else ["ref", *map(str, range(1, len(x_labels)))])
            axes.set_xticks(range(len(x_labels)), ticks, fontsize=FONT)
            axes.set(xlim=(-0.5, len(x_labels) - 0.5))
            axes.set_xlabel("model" if named else "model (as listed in the picker)", fontsize=FONT, labelpad=1)
        else:
            axes.set(xlim=(-0.02, max_ratio + 0.02))
            axes.set_xlabel("pruning ratio", fontsize=FONT, labelpad=1)
        axes.set_ylim(0.0, 1.05)
        axes.set_ylabel("PE-score · accuracy", fontsize=FONT)
        axes.tick_params(labelsize=FONT)
        axes.grid(alpha=0.3)

        axes = self.bar_axes
        positions = np.arange(rows)
        self.bars = axes.barh(positions - BAR_WIDTH / 2, np.zeros(rows), BAR_WIDTH, color=colors + ["k"],
                              animated=True)
        self.compared_bars = axes.barh(positions + BAR_WIDTH / 2, np.zeros(rows), BAR_WIDTH, color="none",
                                       edgecolor=colors + ["k"], hatch="///", animated=True)
        axes.set_yticks(positions, names, fontsize=FONT)
        for label, color in zip(axes.get_yticklabels(), colors + ["k"]):
            label.set_color(color)
        axes.set(xlim=(0.0, 1.05), ylim=(rows - 0.4, -0.6), xticks=[0.0, 0.5, 1.0])  # the first class on top
        axes.set_xlabel("PE-score per class", fontsize=FONT, labelpad=1)
        axes.tick_params(labelsize=FONT)
        axes.grid(axis="x", alpha=0.3)

        styles = [Line2D([], [], color="k", lw=2.5, label="all classes (weighted)"),
                  Line2D([], [], color="0.3", lw=1.5, label="PE-score"),
                  Line2D([], [], color="0.3", ls="--", lw=1, label="accuracy"),
                  Line2D([], [], color=TRUST_LINE_COLOUR, ls="-.", lw=1.2, label="trust line (PE)"),
                  Line2D([], [], color="0.45", ls=(0, (1, 1)), lw=1, label="accuracy budget"),
                  Patch(color=TRUSTED_COLOUR, alpha=0.3, label="trusted ratios"),
                  Patch(facecolor="0.3", label="bars: selected"),
                  Patch(facecolor="none", edgecolor="0.3", hatch="///", label="bars: compared")]
        self.style_legend = self.figure.legend(handles=styles, loc="center left", bbox_to_anchor=(572 / width, 0.5),
                                               fontsize=FONT, frameon=False, handlelength=1.8, borderaxespad=0.2,
                                               labelspacing=0.25)

        self._animated = [self.trusted_span, *self.pe_lines, *self.accuracy_lines, self.pe_line,
                          self.accuracy_line, self.marker, self.trust_line, self.budget_line,
                          *self.bars, *self.compared_bars]
        self._background = None

    def set_curves(self, ratios: np.ndarray, pe_by_class: np.ndarray, accuracy_by_class: np.ndarray,
                   pe: np.ndarray, accuracy: np.ndarray) -> None:
        """Curves over ``ratios (R,)``: ``pe_by_class``, ``accuracy_by_class (R, K)``, ``pe``, ``accuracy (R,)``."""
        for k, (pe_line, accuracy_line) in enumerate(zip(self.pe_lines, self.accuracy_lines)):
            pe_line.set_data(ratios, pe_by_class[:, k])
            accuracy_line.set_data(ratios, accuracy_by_class[:, k])
        self.pe_line.set_data(ratios, pe)
        self.accuracy_line.set_data(ratios, accuracy)

    def set_ratio(self, ratio: float) -> None:
        self.marker.set_xdata([ratio, ratio])

    def set_trust(self, trust_pe: float, accuracy_budget: float, trusted_up_to: float | None) -> None:
        """The trust line at ``trust_pe``, the budget line at ``accuracy_budget`` (NaN hides either) and
        the green band from 0 to ``trusted_up_to`` (None or 0: no band)."""
        self.trust_line.set_ydata([trust_pe, trust_pe])
        self.budget_line.set_ydata([accuracy_budget, accuracy_budget])
        start = self.curve_axes.get_xlim()[0]
        self.trusted_span.set_x(start)
        self.trusted_span.set_width(0.0 if not trusted_up_to else trusted_up_to - start)

    def set_bars(self, pe: np.ndarray, compared_pe: np.ndarray) -> None:
        """Bar lengths ``(K + 1,)`` (classes, then all); NaN (no such model) draws no bar."""
        for bar, length in zip(self.bars, pe):
            bar.set_width(0.0 if np.isnan(length) else length)
        for bar, length in zip(self.compared_bars, compared_pe):
            bar.set_width(0.0 if np.isnan(length) else length)

    def highlight(self, selected: int | None) -> None:
        """Dim every class but position ``selected`` (None: show all)."""
        for k, (pe_line, accuracy_line) in enumerate(zip(self.pe_lines, self.accuracy_lines)):
            alpha = 1.0 if selected is None or k == selected else DIMMED
            pe_line.set_alpha(alpha)
            accuracy_line.set_alpha(alpha)

    def png(self) -> bytes:
        """The figure as PNG bytes: static parts drawn once, animated artists blitted over them."""
        canvas: FigureCanvasAgg = self.figure.canvas  # type: ignore[assignment]  # the Agg canvas __init__ set
        if self._background is None:
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        else:
            canvas.restore_region(self._background)
        for artist in self._animated:
            self.figure.draw_artist(artist)
        return encode(np.asarray(canvas.buffer_rgba()))


def _text_px(text: str, renderer) -> float:
    """The width in pixels of ``text`` at :data:`FONT` points."""
    return renderer.get_text_width_height_descent(text, FontProperties(size=FONT), ismath=False)[0]


def _cut(name: str, pixels: float, renderer) -> str:
    """``name`` at most ``pixels`` wide, cut with an ellipsis."""
    cut = name
    while len(cut) > 1 and _text_px(cut, renderer) > pixels:
        cut = cut[:-2] + "…"
    return cut
