"""The explorer's summary figure: PE and accuracy vs ratio per class, and per-class bars at one ratio.

The figure and its artists are made once. Setters change the artists' data; :meth:`png` blits
them over the cached background (axes, ticks, labels), so a redraw costs milliseconds. Titles
that change live outside the figure (text is the slowest thing Agg draws).
"""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .render import encode

BAR_WIDTH = 0.4
DIMMED = 0.2


class SummaryFigure:
    """Left: one solid PE line and one dashed accuracy line per class (coloured), the class-weighted
    ones in black, and a dotted marker at the current ratio. Right: PE per class (and "all") at the
    current ratio, for the selected pruner (solid) and the compared one (hatched).
    """

    def __init__(self, class_names: list[str], max_ratio: float, size=(8.5, 2.8), dpi: int = 80):
        self.figure = Figure(figsize=size, dpi=dpi)
        FigureCanvasAgg(self.figure)
        self.figure.subplots_adjust(left=0.06, right=0.99, top=0.97, bottom=0.2, wspace=0.18)
        self.curve_axes, self.bar_axes = self.figure.subplots(1, 2, gridspec_kw={"width_ratios": (1.2, 1)})
        colors = [f"C{k % 10}" for k in range(len(class_names))]

        axes = self.curve_axes
        self.pe_lines = [axes.plot([], [], color=c, marker="o", ms=3, lw=1.5, animated=True)[0] for c in colors]
        self.accuracy_lines = [axes.plot([], [], color=c, ls="--", lw=1, animated=True)[0] for c in colors]
        self.pe_line = axes.plot([], [], color="k", marker="o", ms=4, lw=2.5, animated=True)[0]
        self.accuracy_line = axes.plot([], [], color="k", ls="--", lw=2, animated=True)[0]
        self.marker = axes.axvline(0.0, color="0.35", ls=":", lw=1.5, animated=True)
        axes.set(xlim=(-0.02, max_ratio + 0.02), ylim=(0.0, 1.05), xlabel="pruning ratio")
        axes.legend(handles=[Line2D([], [], color="k", lw=2.5, label="PE"),
                             Line2D([], [], color="k", ls="--", lw=2, label="accuracy")],
                    loc="lower left", fontsize=8, title="black: all classes", title_fontsize=8)
        axes.grid(alpha=0.3)

        axes = self.bar_axes
        positions = np.arange(len(class_names) + 1)
        self.bars = axes.bar(positions - BAR_WIDTH / 2, np.zeros(len(positions)), BAR_WIDTH,
                             color=colors + ["k"], animated=True)
        self.compared_bars = axes.bar(positions + BAR_WIDTH / 2, np.zeros(len(positions)), BAR_WIDTH,
                                      color="none", edgecolor=colors + ["k"], hatch="///", animated=True)
        axes.set_xticks(positions, list(class_names) + ["all"], rotation=30 if len(class_names) > 5 else 0,
                        fontsize=8)
        for label, color in zip(axes.get_xticklabels(), colors + ["k"]):
            label.set_color(color)
        axes.set(ylim=(0.0, 1.05), xlim=(-0.6, len(class_names) + 0.6))
        axes.grid(axis="y", alpha=0.3)

        self._animated = [*self.pe_lines, *self.accuracy_lines, self.pe_line, self.accuracy_line,
                          self.marker, *self.bars, *self.compared_bars]
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

    def set_bars(self, pe: np.ndarray, compared_pe: np.ndarray) -> None:
        """Bar heights ``(K + 1,)`` (classes, then all); NaN (no such model) draws no bar."""
        for bar, height in zip(self.bars, pe):
            bar.set_height(0.0 if np.isnan(height) else height)
        for bar, height in zip(self.compared_bars, compared_pe):
            bar.set_height(0.0 if np.isnan(height) else height)

    def highlight(self, selected: int | None) -> None:
        """Dim every class but position ``selected`` (None: show all)."""
        for k, (pe_line, accuracy_line) in enumerate(zip(self.pe_lines, self.accuracy_lines)):
            alpha = 1.0 if selected is None or k == selected else DIMMED
            pe_line.set_alpha(alpha)
            accuracy_line.set_alpha(alpha)

    def png(self) -> bytes:
        """The figure as PNG bytes: static parts drawn once, animated artists blitted over them."""
        canvas = self.figure.canvas
        if self._background is None:
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        else:
            canvas.restore_region(self._background)
        for artist in self._animated:
            self.figure.draw_artist(artist)
        return encode(np.asarray(canvas.buffer_rgba()))
