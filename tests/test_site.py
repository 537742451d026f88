"""The documentation site builds offline, warnings as errors, in under three minutes, and its
generated pages say what the code says.

The build renders the notebooks that ``tests/test_notebooks.py`` executed and saved in
``build/notebooks`` (this file runs after it: pytest takes test files in alphabetical order). Run
alone, before those copies exist or after a notebook changed, it renders the stored notebooks
without outputs and says so in a warning; the test of rendered outputs then fails, naming the fix.
"""
import argparse
import html
import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import pescore_nb
from pescore_nb import cli, runconfig, schema
from pescore_nb.metrics import PEConfig
from pescore_nb.specs import ConfigError

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import pescore_docs  # noqa: E402  (docs/_ext: the generator of the site's code-defined pages)

BUILD_SECONDS = 180
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CLOSED_PORT = "http://127.0.0.1:9"  # any HTTP(S) fetch during the build fails


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built into a temporary folder as ``make docs`` would, with the notebooks' executed
    copies when they are there: ``.html`` (the folder), ``.seconds``, ``.mode``, ``.log``."""
    out = tmp_path_factory.mktemp("site")
    executed = all(pescore_docs.is_executed_copy(pescore_docs.EXECUTED / path.name, path) for path in NOTEBOOKS)
    mode = "executed" if executed else "stored"
    if not executed:
        warnings.warn(f"{pescore_docs.EXECUTED} holds no executed copy of every notebook: the site renders the "
                      "stored notebooks without outputs (run tests/test_notebooks.py first)")
    env = {**os.environ, "PESCORE_DOCS_NOTEBOOKS": mode, "http_proxy": CLOSED_PORT, "https_proxy": CLOSED_PORT,
           "HTTP_PROXY": CLOSED_PORT, "HTTPS_PROXY": CLOSED_PORT, "no_proxy": "", "NO_PROXY": ""}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
                             "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
                            env=env, capture_output=True, text=True, timeout=BUILD_SECONDS * 2)
    seconds = time.monotonic() - start
    assert result.returncode == 0, f"the docs build failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return SimpleNamespace(html=out / "html", seconds=seconds, mode=mode, log=result.stdout + result.stderr)


def page(site, name: str) -> str:
    """The text of a built page, tags removed and entities decoded, whitespace collapsed."""
    text = re.sub(r"<[^>]+>", " ", (site.html / name).read_text())
    return " ".join(html.unescape(text).split())


def plain(text: str) -> str:
    """``text`` without reST roles and backticks, whitespace collapsed: how a docstring reads rendered."""
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text)
    return " ".join(text.replace("`", "").split())


def test_site_builds_offline_with_warnings_as_errors_in_three_minutes(site):
    print(f"docs build: {site.seconds:.1f} s, notebooks {site.mode}")
    assert site.seconds < BUILD_SECONDS, f"the docs build took {site.seconds:.0f} s (limit {BUILD_SECONDS} s)"
    conf = (DOCS / "conf.py").read_text()
    assert "intersphinx" not in conf, "intersphinx fetches inventories from the network"


def test_every_page_is_built_and_listed(site):
    pages = sorted(path.stem for path in DOCS.glob("*.md"))
    for name in pages:
        assert (site.html / f"{name}.html").is_file(), name
    index = (site.html / "index.html").read_text()
    for name in pages:
        if name != "index":
            assert f'href="{name}.html"' in index, f"{name} is not in the navigation"
    api = len(pescore_nb.__all__) + len(pescore_docs.API_MODULES)
    print(f"{len(pages)} pages, {len(NOTEBOOKS)} notebooks and {api} API pages")


def test_home_page_has_the_set_up_commands_of_readme_and_the_demo_table(site):
    readme = (REPO / "README.md").read_text()
    set_up = readme.split("## Set-up: the two commands", 1)[1].split("Each command creates", 1)[0]
    commands = re.findall(r"^make \w+.*$", set_up, flags=re.MULTILINE)
    assert len(commands) == 2, set_up
    home = page(site, "index.html")
    for command in commands:
        assert " ".join(command.split()) in home, command
    assert 'src="_images/explorer.png"' in (site.html / "index.html").read_text()
    if pescore_docs.SUMMARY.is_file():
        summary = json.loads(pescore_docs.SUMMARY.read_text())
        assert f"pescore_nb {summary['versions']['pescore_nb']}" in home and summary["date"] in home
        for row in summary["recommend"]:
            trusted = f"{row['ratio']:.2f}" if row["model"] is not None else "none trusted"
            cells = f"{row['pruner']} {row['layer']} {row['cam']} {trusted} {row['accuracy_only_ratio']:.2f}"
            assert cells in home, row
    else:
        assert "No output of pescore demo is committed yet" in home


def test_every_exported_name_has_its_docstring_on_an_api_page(site):
    for name in pescore_nb.__all__:
        built = (site.html / "_generated" / "api" / f"{name}.html").read_text()
        assert f'id="pescore_nb.{name}"' in built, name
        summary = plain(getattr(pescore_nb, name).__doc__.split("\n\n")[0])[:40].replace(" ", "")
        assert summary in page(site, f"_generated/api/{name}.html").replace(" ", ""), (name, summary)


def test_cli_reference_lists_every_argument_of_the_parser(site):
    text = page(site, "cli.html")
    parser = cli._parser()
    subcommands = [choice for action in parser._subparsers._group_actions for choice in action.choices.values()]
    for each in [parser, *subcommands]:
        assert each.prog in text
        for action in each._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # its commands are checked as parsers
            for option in action.option_strings or [action.dest]:
                assert option in text, (each.prog, option)


def accepted_keys(tmp_path: Path) -> dict[str, list[str]]:
    """``{where: keys}``: the keys the config reader accepts at each place, from its own error on an
    unknown key placed there (not from the table the page is made of)."""
    base = {"reference": {"zoo": "vgg", "dataset": "shapes"}, "data": {"source": "shapes"},
            "prune": {"pruner": "l2", "ratios": [0.5], "data": {"source": "shapes"}, "finetune": {"epochs": 1}}}
    places = {"": [], "reference": ["reference"], "twin": ["twin"], "candidates.mine": ["candidates", "mine"],
              "data": ["data"], "prune": ["prune"], "prune.data": ["prune", "data"],
              "prune.finetune": ["prune", "finetune"], "pe": ["pe"], "recommend": ["recommend"]}
    found = {}
    for where, path in places.items():
        values = json.loads(json.dumps(base))
        if where == "twin":
            values["twin"] = {"zoo": "vgg", "dataset": "shapes"}
        if where.startswith("candidates"):
            del values["prune"]
            values["candidates"] = {"mine": {"zoo": "vgg", "dataset": "shapes"}}
        section = values
        for key in path:
            section = section.setdefault(key, {})
        section["no_such_key"] = 1
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(values))
        with pytest.raises(ConfigError) as error:
            runconfig.read(config)
        assert "no_such_key" in str(error.value), (where, str(error.value))
        found[where] = re.search(r"known keys: \[([^\]]*)\]", str(error.value)).group(1).replace("'", "").split(", ")
    return found


# Where each place of a config is described on the YAML page: its sections' titles.
YAML_PAGE_SECTIONS = {"": ["The top level"], "reference": ["A model"], "twin": ["A model"],
                      "candidates.mine": ["A model", "A candidate"], "data": ["Data"],
                      "prune.data": ["Data"], "prune": ["prune : a sweep"], "prune.finetune": ["prune.finetune"],
                      "pe": ["pe : the metric"], "recommend": ["recommend : the trust rule"]}


def test_yaml_reference_lists_every_key_the_reader_accepts(site, tmp_path):
    built = (site.html / "yaml.html").read_text()
    sections = {}
    for part in built.split("<h2")[1:]:
        title = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", part.split("</h2>", 1)[0].split(">", 1)[1])).split())
        sections[title] = part
    for where, keys in accepted_keys(tmp_path).items():
        described = [body for title, body in sections.items()
                     if any(title.startswith(wanted) for wanted in YAML_PAGE_SECTIONS[where])]
        assert described, (where, list(sections))
        for key in keys:
            assert any(f'<span class="pre">{key}</span>' in body for body in described), (where, key)


def test_metric_and_schema_pages_list_every_field_and_name(site):
    metric = page(site, "metric.html")
    for field in PEConfig.__dataclass_fields__:
        assert field in metric, field
    results = page(site, "results.html")
    for name in (schema.HEATMAP, schema.PE, schema.SSIM, schema.IOU, schema.CONF, schema.DEGENERATE, schema.INPUT,
                 schema.ROLE, schema.SEED, schema.RATIO, schema.PROVENANCE, schema.SCHEMA_VERSION_ATTRIBUTE):
        assert f"{name} " in results and schema.DESCRIPTIONS[name] in results, name
    assert f"schema version {schema.SCHEMA_VERSION}" in results


def test_notebooks_are_rendered_with_their_outputs(site):
    assert site.mode == "executed", ("the notebooks were rendered without outputs: run "
                                     "`pytest tests/test_notebooks.py tests/test_site.py`")
    for path in NOTEBOOKS:
        built = (site.html / "_generated" / "notebooks" / f"{path.stem}.html").read_text()
        assert built.count("cell_output") >= 1, path.name
        if path.stem != "02_explorer":
            assert "FACTS:" in built, path.name  # the line the notebook prints from its own run


def test_changelog_and_citation(site):
    changelog = page(site, "changelog.html")
    for version in ("0.1.0", "0.2.0", pescore_nb.__version__):
        assert f"{version} (" in changelog, version
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] and "version" not in citation  # the version lives in pescore_nb/__init__.py
    assert citation["preferred-citation"]["doi"] in page(site, "citation.html")


def test_readme_links_to_pages_that_exist():
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?:|#)[^)\s]+)\)", readme)
    assert any(link.startswith("docs/") and link.endswith(".md") for link in links), "README links to no page"
    for link in links:
        assert (REPO / link.split("#")[0]).exists(), link


@pytest.mark.browser
def test_home_and_evaluate_pages_in_chromium(site):
    """The built pages open in Chromium without a failed request or a script error; screenshots in
    test-artifacts/docs (copied to docs/ by hand when they change)."""
    from playwright.sync_api import sync_playwright

    artifacts = REPO / "test-artifacts" / "docs"
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            view = browser.new_page(viewport={"width": 1280, "height": 900})
            problems = []
            view.on("pageerror", lambda error: problems.append(str(error)))
            view.on("requestfailed", lambda request: problems.append(request.url))
            for name, shot in (("index.html", "docs-home.png"), ("_generated/api/evaluate.html", "docs-evaluate.png")):
                view.goto((site.html / name).as_uri())
                view.wait_for_load_state("load")
                assert f"pescore_nb {pescore_nb.__version__}" in view.title(), view.title()
                view.screenshot(path=str(artifacts / shot))
            assert not problems, problems
        finally:
            browser.close()
