"""The explorer in a real JupyterLab in a real Chromium at 1440x900 with the side bar closed: open
``notebooks/02_explorer.ipynb``, run all its cells (it prunes the zoo model, evaluates and saves
``explorer.nc``, then shows the explorer), check that the controls, the map panels, their colour
bars, the verdict, the readout and the summary all lie inside the window, move the ratio slider,
see the candidate heatmap, the PE readout and the verdict change. Then the HTML report of the same
results opens in Chromium with every image loaded, no console error and no network request.
Fails (never skips) without Chromium.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and Playwright's Python package; it
drives ``/usr/bin/chromium``, never a browser of Playwright's own. Screenshots are kept in
``test-artifacts/browser/`` (:data:`ARTIFACTS`): ``explorer.png`` (the window as a user sees it),
``report.png`` (the whole report), and ``*-failure.png`` when a step fails.
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
from pathlib import Path

import pytest
import xarray as xr
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600, func_only=True)]  # zoo training not timed

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"
WINDOW = {"width": 1440, "height": 900}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTEBOOK = REPO / "notebooks" / "02_explorer.ipynb"
RESULTS = "explorer.nc"  # what the notebook writes next to itself
CANDIDATE, READOUT, RATIO_HANDLE = "img.pescore-candidate", ".pescore-readout", ".pescore-ratio .noUi-handle"
VERDICT = ".pescore-verdict"
# Everything a user must see at once: the controls, the five map panels, the colour bars, the verdict,
# the readout and the summary (the side-by-side view may wrap below in a narrower window).
ON_SCREEN = (".pescore-explorer .widget-dropdown", ".pescore-ratio", "img.pescore-picture", "img.pescore-reference",
             CANDIDATE, "img.pescore-difference", "img.pescore-masks", "img.pescore-colorbar", VERDICT, READOUT,
             "img.pescore-summary")
TRACEBACK = ".jp-OutputArea-output:has-text('Traceback')"
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


def close_the_side_bar(page) -> None:
    """Collapse JupyterLab's left side bar (a click on its open tab, as a user would)."""
    current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if current.count():
        current.first.click()
    page.wait_for_function("!document.querySelector('#jp-left-stack') || "
                           "document.querySelector('#jp-left-stack').offsetWidth === 0", timeout=10_000)


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


def test_ratio_slider_changes_candidate_heatmap_and_readout_in_jupyterlab(lab, tmp_path, trained_zoo):
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install Debian's package with "
                    "'apt-get update && apt-get install -y chromium' (.ci/run does so in CI).")

    url, work = lab
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)  # run a copy: explorer.nc is written next to it, in work/
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            headless=True, viewport=WINDOW)
        page = browser.new_page()
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK.name}")
            page.wait_for_selector(".jp-Notebook .jp-CodeCell .jp-InputArea-editor", timeout=KERNEL_SECONDS * 1000)
            close_the_side_bar(page)
            run_all_cells(page)
            page.wait_for_selector(f"{CANDIDATE}, {TRACEBACK}", timeout=NOTEBOOK_SECONDS * 1000)
            assert page.query_selector(CANDIDATE), "a cell raised (its traceback is printed below)"
            page.wait_for_function(f"document.querySelector('{CANDIDATE}').naturalWidth > 0")
            ds, (_, first_shown), (second, second_shown) = first_two_models(work / RESULTS)
            before_src, before_digest, before_pe = (page.get_attribute(CANDIDATE, "src"),
                                                    image_digest(page, CANDIDATE), shown_pe(page))
            assert first_shown in page.inner_text(READOUT)
            page.eval_on_selector(".pescore-explorer", "el => el.scrollIntoView({block: 'start'})")
            page.wait_for_function("document.querySelector('img.pescore-summary').naturalWidth > 0")
            assert images_loaded(page, "img.pescore-colorbar"), "a colour bar did not load"
            assert page.eval_on_selector_all("img.pescore-colorbar", "els => els.length") == 3
            assert outside_the_window(page) == [], "parts of the explorer lie outside the 1440x900 window"
            page.screenshot(path=str(ARTIFACTS / "explorer.png"))
            before_verdict = page.inner_text(VERDICT)
            assert re.search(r"(✔ trusted|✘ not trusted|\? not assessable)", before_verdict)  # one of three states
            assert "control PE" in before_verdict and "control:twin" in before_verdict  # the twin, or its absence

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
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "explorer-failure.png"))
            outputs = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
            print(f"Notebook outputs at the failure (screenshot in {ARTIFACTS}):\n{outputs[-3000:]}")
            raise
        finally:
            browser.close()


def test_the_html_report_opens_in_chromium_with_every_image_and_no_error(tmp_path):
    """The report of a hand-made Dataset with three fine-tuning seeds, opened from disk: images decode,
    nothing is fetched, no console error, and it says what its verdicts' bound covers."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install Debian's package with "
                    "'apt-get update && apt-get install -y chromium'.")
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
