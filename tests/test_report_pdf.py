"""The HTML report printed to PDF as a reader's browser prints it (headless Chromium, A4 and US Letter):
every figure, its image and its numbered caption together, on exactly one page. Fails (never skips)
without Chromium.

Needs Debian's ``chromium`` (``apt-get install -y chromium``), Playwright's Python package (it drives
``/usr/bin/chromium``, never a browser of its own) and pypdf. The PDFs are kept in
``test-artifacts/report-pdf/``.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pypdf
import pytest
from playwright.sync_api import sync_playwright

pytestmark = [pytest.mark.browser]

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "report-pdf"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CAPTION = re.compile(r"Figure (\d+)\.")  # "Figure 3." opens a caption; "Figure 1, in the answer" is a reference


@pytest.fixture(scope="module")
def report_path(tmp_path_factory) -> Path:
    """The report of a Dataset with two layers, three seeds and heatmap grids taller than a page (20 images
    by 5 ratios): without the report's print styles Chromium slices them over two pages."""
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic import seeded_results_dataset

    from pescore_nb import html_report
    ds = seeded_results_dataset(n_images=30, size=32, ratios=(0.1, 0.2, 0.3, 0.6))
    return html_report.report(ds, tmp_path_factory.mktemp("pdf") / "report.html", n_resamples=50, heatmap_images=20)


@pytest.mark.parametrize("paper", ["A4", "Letter"])
def test_each_figure_of_the_printed_report_lies_on_one_page(report_path, paper):
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install Debian's package with "
                    "'apt-get update && apt-get install -y chromium'.")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pdf = ARTIFACTS / f"report-{paper}.pdf"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(report_path.as_uri())
            page.wait_for_load_state("load")
            n_figures = page.eval_on_selector_all("figure", "els => els.length")
            page.pdf(path=str(pdf), format=paper, print_background=True)
        finally:
            browser.close()
    pages = pypdf.PdfReader(pdf).pages
    captions = [[int(n) for n in CAPTION.findall(page.extract_text())] for page in pages]
    images = [len(page.images) for page in pages]
    assert n_figures >= 10 and sorted(n for found in captions for n in found) == list(range(1, n_figures + 1)), \
        captions  # each caption printed once, on one page
    assert [len(found) for found in captions] == images, (captions, images)  # no image split over two pages
    assert [n for found in captions for n in found] == list(range(1, n_figures + 1))  # in order
    for page in pages:  # and each image drawn whole inside its page, not cut by the page's edge
        height = float(page.mediabox.height)
        assert all(0 <= box[1] and box[3] <= height for box in image_boxes(page)), image_boxes(page)


def image_boxes(page) -> list[tuple[float, float, float, float]]:
    """``(x0, y0, x1, y1)`` in points of each image ``page`` draws: the unit square through the current
    transformation matrix at each ``Do``."""
    matrix, saved, boxes = np.eye(3), [], []
    for operands, operator in page.get_contents().operations:
        if operator == b"q":
            saved.append(matrix)
        elif operator == b"Q":
            matrix = saved.pop()
        elif operator == b"cm":
            a, b, c, d, e, f = map(float, operands)
            matrix = np.array([[a, b, 0], [c, d, 0], [e, f, 1]]) @ matrix
        elif operator == b"Do":
            corners = np.array([[0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]]) @ matrix
            boxes.append((corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max()))
    return boxes
