"""The report of ``slit run``: the results folder, its figures, the HTML page (opened in
headless Chromium) and all-or-nothing writing."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scenario_helpers import write_tiny

from slit.cli.app import main
from slit.errors import SlitInputError
from slit.experiment.run import POLICIES
from slit.report import bundle
from slit.report.bundle import OWN_FILES, REPORT_FILE, RESULTS_FILE, write_results_dir
from slit.report.plots import FIGURES, FigureSpec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny ``slit run SCENARIO --out DIR --json FILE``, shared by the report tests."""
    folder = tmp_path_factory.mktemp("report")
    scenario = write_tiny(folder)
    out = folder / "results"
    argv = ["slit", "run", str(scenario), "--out", str(out), "--json", str(folder / "r.json")]
    stdout = io.StringIO()
    saved = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as stop:
            main()
            raise SystemExit(0)
    finally:
        sys.argv = saved
    assert stop.value.code == 0, stdout.getvalue()
    assert "wrote" in stdout.getvalue()
    return out


def test_results_folder_holds_report_figures_and_json(results: Path) -> None:
    assert {p.name for p in results.iterdir()} == set(OWN_FILES)
    for spec in FIGURES:
        data = (results / spec.file).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    doc = json.loads((results / RESULTS_FILE).read_text())
    assert set(doc["policies"]) == set(POLICIES)
    assert doc["scenario"]["name"] == "tiny"
    assert doc["scenario"]["sites"] == ["US-CAL-CISO", "DE-LU", "SG"]
    assert doc["policies"]["slit"]["requests"] > 1000
    # --json writes the same document elsewhere.
    assert json.loads((results.parent / "r.json").read_text()) == doc
    # Nothing temporary is left beside the folder.
    assert sorted(p.name for p in results.parent.iterdir()) == ["r.json", "results",
                                                                 "tiny.yaml"]


def test_report_is_self_contained(results: Path) -> None:
    page = (results / REPORT_FILE).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == len(FIGURES)
    # Opens offline: nothing is fetched, nothing runs.
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"(https?:)?//[a-z]", text)
    assert "<script" not in page and "<link" not in page
    for spec in FIGURES:
        assert f">{spec.title}</h2>" in page
    for policy in POLICIES:
        assert f"<td>{policy}</td>" in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Records script errors and failed resource loads in the DOM, and counts decoded images.
PROBE = (
    "<script>window.addEventListener('error',function(){document.documentElement"
    ".setAttribute('data-load-error','1')},true);window.addEventListener('load',function()"
    "{var ok=[].filter.call(document.images,function(i){return i.complete&&i.naturalWidth>0})"
    ".length;document.body.setAttribute('data-images-ok',String(ok))});</script>"
)


def _open_in_chromium(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after load, and the console messages Chromium logged."""
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    return done.stdout, console


def _probed_copy(results: Path, folder: Path, extra: str = "") -> Path:
    page = (results / REPORT_FILE).read_text(encoding="utf-8")
    copy = folder / "probe.html"
    copy.write_text(page.replace("<head>", "<head>" + PROBE + extra, 1), encoding="utf-8")
    return copy


def test_report_renders_in_headless_chromium(results: Path, tmp_path: Path) -> None:
    dom, console = _open_in_chromium(_probed_copy(results, tmp_path), tmp_path / "profile")
    assert console == []
    assert 'data-load-error="1"' not in dom
    assert f'data-images-ok="{len(FIGURES)}"' in dom
    assert "<h1>SLIT report: tiny</h1>" in dom
    for spec in FIGURES:
        assert f">{spec.title}</h2>" in dom


def test_chromium_check_sees_console_errors(results: Path, tmp_path: Path) -> None:
    broken = "<script>console.error('slit-probe-broken');undefinedCall();</script>"
    dom, console = _open_in_chromium(_probed_copy(results, tmp_path, broken),
                                     tmp_path / "profile")
    assert any("slit-probe-broken" in line for line in console)
    assert 'data-load-error="1"' in dom


def test_failed_report_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(result: object) -> bytes:
        raise RuntimeError("plot failed")

    figures = (FigureSpec("a.png", "A", "a", lambda r: PNG_MAGIC),
               FigureSpec("b.png", "B", "b", boom))
    monkeypatch.setattr(bundle, "FIGURES", figures)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_results_dir(tmp_path / "out", result=None)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_earlier_results_are_replaced_whole(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle, "FIGURES", (FigureSpec("pareto.png", "A", "a",
                                                       lambda r: b"new"),))
    monkeypatch.setattr(bundle, "render_html", lambda result, figures: "<html></html>")
    monkeypatch.setattr(bundle, "results_document", lambda result: {"new": True})
    out = tmp_path / "out"
    out.mkdir()
    (out / "pareto.png").write_bytes(b"old")
    (out / "ttft_cdf.png").write_bytes(b"old, gone after the run")
    write_results_dir(out, result=None)  # type: ignore[arg-type]
    assert (out / "pareto.png").read_bytes() == b"new"
    assert not (out / "ttft_cdf.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_foreign_folder_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(SlitInputError, match="holds other files"):
        write_results_dir(tmp_path, result=None)  # type: ignore[arg-type]
    assert (tmp_path / "thesis.tex").read_text() == "precious"
