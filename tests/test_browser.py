"""The explorer in a real JupyterLab in a real Chromium at 1440x900 with JupyterLab's side bar open (its
default): open ``notebooks/02_explorer.ipynb``, run all its cells (it prunes the zoo model, evaluates
and saves ``explorer-<version>.nc``, then shows the explorer), check that the explorer is at most 1080 x 780 px
with no text below 12 px, that the controls, the map panels, their colour bars, the verdict, the
readout and the summary all lie inside the window, move the ratio slider, see the candidate heatmap,
the PE readout and the verdict change. On a hand-made Dataset with three seeds, a pruner with no
trusted ratio beside one with a trusted ratio, and one model's maps degenerate: the seed picker's
place, the verdict's words and colour for that pruner, and the degenerate note only on the pair it
concerns. Then the HTML report of the same results opens in Chromium with every image loaded, no
console error and no network request. Fails (never skips) without Chromium.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and Playwright's Python package; it
drives ``/usr/bin/chromium``, never a browser of Playwright's own. Screenshots are kept in
``test-artifacts/browser/`` (:data:`ARTIFACTS`): ``explorer.png`` (the window as a user sees it),
``report.png`` (the whole report), and ``*-failure.png`` when a step fails; ``explorer.png`` is the
picture of ``docs/explorer.png``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import xarray as xr
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

import pescore_nb

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600, func_only=True)]  # zoo training not timed

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"
WINDOW = {"width": 1440, "height": 900}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTEBOOK = REPO / "notebooks" / "02_explorer.ipynb"
RESULTS = f"explorer-{pescore_nb.__version__}.nc"  # what the notebook writes next to itself
CANDIDATE, READOUT, RATIO_HANDLE = "img.pescore-candidate", ".pescore-readout", ".pescore-ratio .noUi-handle"
VERDICT = ".pescore-verdict"
# Everything a user must see at once: the controls, the five map panels, the colour bars, the verdict,
# the readout and the summary (the side-by-side view may wrap below in a narrower window).
ON_SCREEN = (".pescore-explorer .widget-dropdown", ".pescore-ratio", "img.pescore-picture", "img.pescore-reference",
             CANDIDATE, "img.pescore-difference", "img.pescore-masks", "img.pescore-colorbar", VERDICT, READOUT,
             "img.pescore-summary")
TRACEBACK = ".jp-OutputArea-output:has-text('Traceback')"
EXPLORER = ".pescore-explorer"
MAX_EXPLORER = {"width": 1080, "height": 780}  # px, with the side bar open
SMALLEST_TEXT_PX = 12
STATE_COLOURS_CSS = {state: "rgb({}, {}, {})".format(*(int(colour[i:i + 2], 16) for i in (1, 3, 5)))
                     for state, colour in {"trusted": "#007a4d", "not trusted": "#c0392b"}.items()}
START_SECONDS, KERNEL_SECONDS, NOTEBOOK_SECONDS = 90, 180, 300


@pytest.fixture(scope="session")
def trained_zoo():
    """Train (or load) the zoo model the notebook uses, once, before the browser's clock starts."""
    from pescore_nb import zoo
    zoo.load("vgg", "shapes", progress=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free localhost port, serving ``tmp_path/work``; stopped always."""
    work, home = tmp_path / "work", tmp_path / "jupyter"
    work.mkdir()
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_CONFIG_DIR": str(home / "config")}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={work}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(url, server, tmp_path / "jupyterlab.log")
        yield url, work
    finally:
        _stop(server)
        log.close()


def _wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer on {url} within {START_SECONDS} s:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM (the server shuts its kernels down), then SIGKILL to the whole process group."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait()


def image_digest(page, selector: str) -> str:
    """SHA-256 of the bytes the browser shows in ``<img selector>`` (its blob: URL fetched in the page)."""
    data = page.eval_on_selector(
        selector, "async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))")
    return hashlib.sha256(bytes(data)).hexdigest()


def run_all_cells(page, tries: int = 3) -> None:
    """Run > Run All Cells once the kernel is idle; again if no cell started (a request sent while
    the kernel was still connecting is dropped)."""
    for _ in range(tries):
        page.wait_for_selector(".jp-StatusBar-Widget:has-text('Idle')", timeout=KERNEL_SECONDS * 1000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            page.wait_for_function("[...document.querySelectorAll('.jp-Cell .jp-InputPrompt')]"
                                   ".some(prompt => /\\[(\\*|\\d+)\\]/.test(prompt.innerText))", timeout=20_000)
            return
        except PlaywrightTimeout:
            continue
    pytest.fail(f"No cell started after {tries} tries of Run All Cells.")


def shown_pe(page) -> float:
    return float(re.search(r"PE ([0-9.]+)", page.inner_text(READOUT)).group(1))


def first_two_models(path: Path) -> tuple[xr.Dataset, list[str], list[str]]:
    """The saved results (scores only), and the explorer's first pruner's groups at its two smallest
    ratios (what the slider shows first, and after one step right), each as ``[group, model whose
    maps and numbers the explorer shows]`` (with several seeds: the smallest seed's)."""
    from pescore_nb import structure

    with xr.open_dataset(path, engine="h5netcdf") as saved:
        ds = saved.drop_vars(["heatmap", "input"]).load()
    pruner = structure.pruners(ds)[0]
    groups = structure.by_ratio(ds, pruner)
    assert len(groups) >= 2, f"{NOTEBOOK.name} must evaluate at least two ratios of {pruner!r}"
    members = structure.seed_groups(ds)
    return ds, [groups[0], members[groups[0]][0]], [groups[1], members[groups[1]][0]]


def side_bar_is_open(page) -> bool:
    return page.evaluate("(() => { const s = document.querySelector('#jp-left-stack'); "
                         "return !!s && s.offsetWidth > 0; })()")


def small_texts(page) -> list[str]:
    """``"tag.class 'text': N px"`` for each visible element of the explorer whose own text is below
    :data:`SMALLEST_TEXT_PX`."""
    return page.eval_on_selector(EXPLORER, f"""root => [...root.querySelectorAll('*')].filter(el =>
        el.getClientRects().length > 0 && [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())
        && parseFloat(getComputedStyle(el).fontSize) < {SMALLEST_TEXT_PX}).map(el => `${{el.tagName}}.${{el.className}}
        '${{el.textContent.trim().slice(0, 40)}}': ${{getComputedStyle(el).fontSize}}`)""")


def explorer_box(page) -> dict:
    return page.eval_on_selector(EXPLORER, "el => { const r = el.getBoundingClientRect(); "
                                           "return {x: r.x, y: r.y, width: r.width, height: r.height}; }")


def open_and_run(page, url: str, notebook: str) -> None:
    """Open ``notebook`` in JupyterLab (its side bar left open, as JupyterLab opens), run all its
    cells and wait for the explorer's candidate map."""
    page.goto(f"{url}/lab/tree/{notebook}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell .jp-InputArea-editor", timeout=KERNEL_SECONDS * 1000)
    assert side_bar_is_open(page), "JupyterLab opened with its side bar closed: the test needs it open"
    run_all_cells(page)
    page.wait_for_selector(f"{CANDIDATE}, {TRACEBACK}", timeout=NOTEBOOK_SECONDS * 1000)
    assert page.query_selector(CANDIDATE), "a cell raised (its traceback is printed below)"
    page.wait_for_function(f"document.querySelector('{CANDIDATE}').naturalWidth > 0")


def check_the_explorers_size(page) -> None:
    """The explorer fits :data:`MAX_EXPLORER` with no text below :data:`SMALLEST_TEXT_PX`, and its parts
    lie inside the window once it is scrolled to the top."""
    page.eval_on_selector(EXPLORER, "el => el.scrollIntoView({block: 'start'})")
    page.wait_for_function("document.querySelector('img.pescore-summary').naturalWidth > 0")
    box = explorer_box(page)
    assert box["width"] <= MAX_EXPLORER["width"] and box["height"] <= MAX_EXPLORER["height"], box
    assert small_texts(page) == []
    assert outside_the_window(page) == [], "parts of the explorer lie outside the 1440x900 window"


def outside_the_window(page) -> list[str]:
    """``"selector #i: box"`` for each element of :data:`ON_SCREEN` not wholly inside the window."""
    found = []
    for selector in ON_SCREEN:
        elements = page.query_selector_all(selector)
        assert elements, f"nothing matches {selector!r}: the explorer lacks a part"
        for i, element in enumerate(elements):
            box = element.bounding_box()
            if box is None or not (0 <= box["x"] and box["x"] + box["width"] <= WINDOW["width"] + 0.5
                                   and 0 <= box["y"] and box["y"] + box["height"] <= WINDOW["height"] + 0.5):
                found.append(f"{selector} #{i}: {box}")
    return found


def images_loaded(page, selector: str) -> bool:
    return page.eval_on_selector_all(selector, "els => els.length > 0 && els.every(e => e.complete && e.naturalWidth > 0)")


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install Debian's package with "
                    "'apt-get update && apt-get install -y chromium' (.ci/run does so in CI).")


@contextmanager
def jupyterlab_page(tmp_path: Path, failure_screenshot: str) -> Iterator:
    """A Chromium page (1440x900, its own profile) for JupyterLab; on a failure it saves
    ``ARTIFACTS/failure_screenshot`` and prints the notebook's outputs, and it always closes Chromium."""
    require_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            headless=True, viewport=WINDOW)
        page = browser.new_page()
        try:
            yield page
        except Exception:
            page.screenshot(path=str(ARTIFACTS / failure_screenshot))
            outputs = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
            print(f"Notebook outputs at the failure (screenshot in {ARTIFACTS}):\n{outputs[-3000:]}")
            raise
        finally:
            browser.close()


def test_ratio_slider_changes_candidate_heatmap_and_readout_in_jupyterlab(lab, tmp_path, trained_zoo):
    url, work = lab
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)  # run a copy: its results file is written next to it, in work/
    with jupyterlab_page(tmp_path, "explorer-failure.png") as page:
        open_and_run(page, url, NOTEBOOK.name)
        ds, (_, first_shown), (second, second_shown) = first_two_models(work / RESULTS)
        before_src, before_digest, before_pe = (page.get_attribute(CANDIDATE, "src"),
                                                image_digest(page, CANDIDATE), shown_pe(page))
        assert first_shown in page.inner_text(READOUT)
        check_the_explorers_size(page)
        assert images_loaded(page, "img.pescore-colorbar"), "a colour bar did not load"
        assert page.eval_on_selector_all("img.pescore-colorbar", "els => els.length") == 3
        page.screenshot(path=str(ARTIFACTS / "explorer.png"))
        before_verdict = page.inner_text(VERDICT)
        assert re.search(r"(✔ trusted|✘ not trusted|\? not assessable)", before_verdict)  # one of three states
        assert "control:finetune model PE" in before_verdict and "control:twin" in before_verdict  # or its absence

        page.focus(RATIO_HANDLE)
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"document.querySelector('{CANDIDATE}').src !== {json.dumps(before_src)}",
                               timeout=30_000)
        page.wait_for_function(f"document.querySelector('{READOUT}').innerText.includes({json.dumps(second_shown)})",
                               timeout=30_000)
        page.wait_for_function(f"document.querySelector('{CANDIDATE}').naturalWidth > 0")
        page.wait_for_function(f"document.querySelector('{VERDICT}').innerText !== {json.dumps(before_verdict)}",
                               timeout=30_000)
        assert second.split("@")[1] in page.inner_text(VERDICT)  # the verdict names the model it judges
        page.screenshot(path=str(ARTIFACTS / "explorer-after-slider.png"))

        assert image_digest(page, CANDIDATE) != before_digest
        image = int(re.search(r"image (\d+)", page.inner_text(READOUT)).group(1))
        at = {"layer": ds.layer.values[0], "cam": ds.cam.values[0], "image": image}  # the explorer's defaults
        assert before_pe == pytest.approx(float(ds.pe.sel(model=first_shown).sel(at)), abs=5e-5)
        assert shown_pe(page) == pytest.approx(float(ds.pe.sel(model=second_shown).sel(at)), abs=5e-5)
        assert shown_pe(page) != before_pe


BROWSER_RATIOS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)  # the demo's six: the widest ratio slider
DEGENERATE_MODEL = "random@0.70/seed0"  # the maps shown for random@0.70 under the mean of the seeds


def browser_results(path: Path) -> xr.Dataset:
    """Three seeds of l2 and random at six ratios, saved to ``path``: l2 within the accuracy budget
    (trusted at its smallest ratio), random 8.3 accuracy points down (none trusted), and
    :data:`DEGENERATE_MODEL`'s maps degenerate at every image."""
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic import seeded_results_dataset

    import pescore_nb
    from pescore_nb import schema

    ds = seeded_results_dataset(ratios=BROWSER_RATIOS, n_images=30, size=32)
    accuracy = ds[schema.ACCURACY].values.copy()
    reference = accuracy[ds[schema.ROLE].values == schema.REFERENCE][0]
    accuracy[ds[schema.PRUNER].values == "l2"] = reference
    accuracy[ds[schema.PRUNER].values == "random"] = reference - 0.083
    ds = ds.assign_coords({schema.ACCURACY: (schema.MODEL, accuracy)})
    ds[schema.DEGENERATE].loc[{schema.MODEL: DEGENERATE_MODEL}] = True
    pescore_nb.save(ds, path)
    return ds


def test_the_explorer_with_the_side_bar_open_names_none_trusted_in_the_fail_colour(lab, tmp_path):
    """The explorer of :func:`browser_results` in JupyterLab with the side bar open: at most 1080 x 780
    px, no text below 12 px, the seed picker on the first row; random's verdict "none trusted" in the
    not-trusted colour; the degenerate note absent on a non-degenerate pair, present on the degenerate one."""
    import nbformat

    import pescore_nb

    url, work = lab
    ds = browser_results(work / "browser.nc")
    rows = {row.pruner: row for row in pescore_nb.recommend(ds).itertuples() if row.layer == "features.3"}
    assert rows["l2"].model is not None and rows["random"].model is None  # the case the test is about
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}}, cells=[nbformat.v4.new_code_cell(
        "import pescore_nb\npescore_nb.explore(pescore_nb.load('browser.nc'))")])
    nbformat.write(notebook, work / "browser.ipynb")
    with jupyterlab_page(tmp_path, "explorer-synthetic-failure.png") as page:
        open_and_run(page, url, "browser.ipynb")
        check_the_explorers_size(page)
        seed, pruner = (page.locator(f".pescore-{name}").bounding_box() for name in ("seed", "pruner"))
        assert abs(seed["y"] - pruner["y"]) < 2, "the seed picker left the first row"
        assert seed["x"] + seed["width"] <= explorer_box(page)["x"] + MAX_EXPLORER["width"]
        assert "degenerate" not in page.inner_text(READOUT)
        page.screenshot(path=str(ARTIFACTS / "explorer-synthetic.png"))

        page.select_option(".pescore-pruner select", label="random filter")
        page.wait_for_function(f"document.querySelector('{VERDICT}').innerText.includes('none trusted')",
                               timeout=30_000)
        ratio_verdict = page.locator(f"{VERDICT} .pescore-ratio-verdict")
        assert ratio_verdict.inner_text() == "none trusted"
        colour = ratio_verdict.evaluate("el => getComputedStyle(el).color")
        assert colour == STATE_COLOURS_CSS["not trusted"] != STATE_COLOURS_CSS["trusted"]
        verdict = page.inner_text(VERDICT)
        assert "trusted up to" not in verdict and "accuracy drop 8.3 points > budget 2 points" in verdict
        assert page.locator(f"{VERDICT} .pescore-state").evaluate("el => getComputedStyle(el).color") == colour
        assert "random@0.05/seed0" in page.inner_text(READOUT) and "degenerate" not in page.inner_text(READOUT)
        page.screenshot(path=str(ARTIFACTS / "explorer-none-trusted.png"))

        page.focus(RATIO_HANDLE)
        for _ in BROWSER_RATIOS[1:]:  # to the largest ratio
            page.keyboard.press("ArrowRight")
        page.wait_for_function(f"document.querySelector('{READOUT}').innerText.includes('{DEGENERATE_MODEL}')",
                               timeout=30_000)
        assert "the candidate's map is degenerate" in page.inner_text(READOUT)


def test_the_html_report_opens_in_chromium_with_every_image_and_no_error(tmp_path):
    """The report of a hand-made Dataset with three fine-tuning seeds, opened from disk: images decode,
    nothing is fetched, no console error, and it says what its verdicts' bound covers."""
    require_chromium()
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic import seeded_results_dataset

    from pescore_nb import html_report
    ds = seeded_results_dataset(n_images=12, size=32)
    path = html_report.report(ds, tmp_path / "report.html", n_resamples=100, heatmap_images=2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=WINDOW)
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url)
                if not request.url.startswith(("file:", "data:")) else None)
        try:
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            count = page.eval_on_selector_all("img", "els => els.length")
            assert count == 2 * (3 + 2), "a figure is missing from the report"
            assert images_loaded(page, "img"), "an embedded figure did not decode"
            assert "none trusted" in page.inner_text("#trust")
            assert "the bound covers the test images and 3 training seeds" in page.inner_text("#trust")
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [] and requests == []
