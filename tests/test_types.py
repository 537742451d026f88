"""pescore_nb is type-checked: ``mypy pescore_nb`` (the settings in pyproject.toml) finds no error,
from a cold cache, in under two minutes; every ``# type: ignore`` names its error code, and there
are few of them."""
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MYPY_SECONDS = 120
MAX_IGNORES = 20


def test_mypy_finds_no_error_from_a_cold_cache(tmp_path):
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")], cwd=REPO,
                            capture_output=True, text=True, timeout=MYPY_SECONDS * 3)
    seconds = time.monotonic() - start
    print(f"mypy: {seconds:.1f} s; {result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ''}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
    assert seconds < MYPY_SECONDS, f"mypy took {seconds:.0f} s from a cold cache (limit {MYPY_SECONDS} s)"


def test_every_type_ignore_names_its_code_and_there_are_few():
    ignores = []
    for path in sorted((REPO / "pescore_nb").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"#\s*type:\s*ignore", line):
                where = f"{path.relative_to(REPO)}:{number}"
                assert re.search(r"#\s*type:\s*ignore\[[a-z-]+(, ?[a-z-]+)*\]", line), f"{where} names no code"
                ignores.append(where)
    print(f"{len(ignores)} type: ignore comments")
    assert len(ignores) <= MAX_IGNORES, ignores


def test_mypy_settings_check_the_package_and_silence_no_error():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^\[tool\.mypy\]\nfiles = \["pescore_nb"\]$', pyproject, flags=re.MULTILINE), \
        "pyproject.toml's [tool.mypy] must start with files = [\"pescore_nb\"]"
    for setting in ("ignore_errors", "disable_error_code"):
        assert setting not in pyproject, f"pyproject.toml silences errors with {setting}"
    assert (REPO / "pescore_nb" / "py.typed").is_file()
