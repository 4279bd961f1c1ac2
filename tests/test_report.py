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

import numpy as np
import pytest
from rich.console import Console
from scenario_helpers import write_tiny

from slit.cli.app import main
from slit.errors import SlitInputError
from slit.experiment.metrics import PolicyMetrics
from slit.experiment.run import POLICIES
from slit.report import bundle, plots
from slit.report.bundle import OWN_FILES, REPORT_FILE, RESULTS_FILE, write_results_dir
from slit.report.plots import FIGURES, FigureSpec
from slit.report.table import fitted_comparison_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def run_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny ``slit run SCENARIO --out DIR --json FILE`` on an 80-column log (not a
    terminal), shared by the report tests: the results folder and what it printed."""
    folder = tmp_path_factory.mktemp("report")
    scenario = write_tiny(folder)
    out = folder / "results"
    argv = ["slit", "run", str(scenario), "--out", str(out), "--json", str(folder / "r.json"),
            "--workers", "1"]
    stdout = io.StringIO()
    saved = sys.argv, os.environ.get("COLUMNS")
    sys.argv = argv
    os.environ["COLUMNS"] = "80"
    try:
        with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as stop:
            main()
            raise SystemExit(0)
    finally:
        sys.argv = saved[0]
        if saved[1] is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = saved[1]
    assert stop.value.code == 0, stdout.getvalue()
    assert "wrote" in stdout.getvalue()
    return out, stdout.getvalue()


@pytest.fixture(scope="session")
def results(run_output: tuple[Path, str]) -> Path:
    return run_output[0]


def test_run_output_fits_80_columns(run_output: tuple[Path, str]) -> None:
    out, printed = run_output
    lines = printed.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in printed  # no cell cut short
    doc = json.loads((out / RESULTS_FILE).read_text())
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in lines if line.startswith("│")}
    assert set(rows) == set(POLICIES)
    header = next(line for line in lines if line.startswith("┃"))
    assert "SLO %" in header and "CO2 kg" in header
    slo_column = [h.strip() for h in header.split("┃")[2:-1]].index("SLO %")
    for policy in POLICIES:  # the compact table shows the same figures as results.json
        assert rows[policy][slo_column] == f"{doc['policies'][policy]['slo_attainment_pct']:.2f}"
    assert "compact table for 80 columns" in printed


def test_run_shows_every_stage_as_plain_lines_in_a_log(run_output: tuple[Path, str]) -> None:
    printed = run_output[1]
    progress = [line for line in printed.splitlines() if re.match(r"\[ *\d+ s\] ", line)]
    assert progress[0].endswith("loading the scenario, signals and requests ...")
    stages = [line.split("] ", 1)[1] for line in progress]
    assert "planning intervals: 4/4" in stages
    assert f"simulating sites, one policy at a time: {len(POLICIES)}/{len(POLICIES)}" in stages
    # Stages appear in the order they run, and progress comes before the table.
    assert stages.index("planning intervals: 4/4") < stages.index(
        f"simulating sites, one policy at a time: {len(POLICIES)}/{len(POLICIES)}")
    assert printed.index(progress[-1]) < printed.index("┏")


@pytest.mark.parametrize("width", [80, 120, 250])
def test_comparison_table_fits_the_width(results: Path, width: int) -> None:
    doc = json.loads((results / RESULTS_FILE).read_text())
    metrics = {p: PolicyMetrics(**values) for p, values in doc["policies"].items()}
    console = Console(file=io.StringIO(), width=width)
    table, full = fitted_comparison_table(metrics, "t", console)
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text
    assert full == (width >= 250)  # the 13-column table needs about 165 columns
    assert f"{metrics['slit'].carbon_kg:,.0f}" in text


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


@pytest.mark.parametrize(("umask", "folder_mode", "file_mode"),
                         [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_results_folder_follows_the_umask(umask: int, folder_mode: int, file_mode: int,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setattr(bundle, "FIGURES", (FigureSpec("pareto.png", "A", "a",
                                                       lambda r: PNG_MAGIC),))
    monkeypatch.setattr(bundle, "render_html", lambda result, figures: "<html></html>")
    monkeypatch.setattr(bundle, "results_document", lambda result: {"new": True})
    old = os.umask(umask)
    try:
        write_results_dir(tmp_path / "out", result=None)  # type: ignore[arg-type]
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert out.stat().st_mode & 0o777 == folder_mode
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == file_mode, path.name


def test_foreign_folder_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(SlitInputError, match="holds other files"):
        write_results_dir(tmp_path, result=None)  # type: ignore[arg-type]
    assert (tmp_path / "thesis.tex").read_text() == "precious"


@pytest.fixture(scope="session")
def tiny_result(tmp_path_factory: pytest.TempPathFactory):
    from slit.config import load_scenario
    from slit.experiment.run import run_experiment

    return run_experiment(load_scenario(write_tiny(tmp_path_factory.mktemp("fig"))), POLICIES)


def _figure_of(draw, result, monkeypatch: pytest.MonkeyPatch):
    """The matplotlib figure a ``*_figure`` function draws, instead of its PNG bytes."""
    drawn = []
    monkeypatch.setattr(plots, "_png", lambda fig: drawn.append(fig) or b"")
    draw(result)
    return drawn[0]


def test_ttft_figure_shows_the_tail_on_a_log_axis(tiny_result, monkeypatch) -> None:
    fig = _figure_of(plots.ttft_cdf_figure, tiny_result, monkeypatch)
    body, tail = fig.axes
    assert body.get_yscale() == "linear" and tail.get_yscale() == "log"
    assert tail.get_ylim()[0] == pytest.approx(plots.CCDF_FLOOR_PCT)
    slo = tiny_result.scenario.slo_ttft_s
    lines = {line.get_label(): line for line in tail.get_lines() if line.get_label() in POLICIES}
    assert set(lines) == {p for p, t in tiny_result.ttft_s.items() if len(t)}
    assert lines["slit"].get_zorder() > max(line.get_zorder() for p, line in lines.items()
                                            if p != "slit")
    for policy, line in lines.items():
        x, y = line.get_xdata(), line.get_ydata()
        ttft = tiny_result.ttft_s[policy]
        # The curve at the SLO is the share of requests slower than the SLO, in percent.
        at_slo = y[np.searchsorted(x, slo, side="right") - 1] if (x <= slo).any() else 100.0
        assert at_slo == pytest.approx(100.0 * np.mean(ttft > slo), abs=100.0 / len(ttft))


def test_signals_figure_is_a_site_by_hour_heat_map(tiny_result, monkeypatch) -> None:
    from matplotlib.collections import QuadMesh

    fig = _figure_of(plots.signals_figure, tiny_result, monkeypatch)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"
              and any(isinstance(c, QuadMesh) for c in ax.collections)]
    assert len(panels) == 3
    sc = tiny_result.scenario
    order = plots.site_order(sc.site_ids)
    names = [sc.site_ids[s] for s in order]
    carbon = next(c for c in panels[0].collections if isinstance(c, QuadMesh)).get_array()
    assert carbon.shape == (len(names), int(sc.hours))
    expected = [result_hours.iloc[: int(sc.hours)].to_numpy() for result_hours in
                (tiny_result.signals_actual[n][plots.carbon_column(sc.carbon_basis)]
                 .loc[sc.start_utc:] for n in names)]
    np.testing.assert_allclose(np.asarray(carbon), np.array(expected))
    assert [t.get_text() for t in panels[0].get_yticklabels()] == names


def test_sites_are_coloured_by_continent() -> None:
    from slit.data.regions import DEFAULT_REGION_IDS

    assert {r: plots.continent(r) for r in ("AU-NSW", "BR-SP", "CL-SIC", "CA-ON", "US-TEX-ERCO",
                                            "DE-LU", "ZA", "SG", "JP-TK")} == {
        "AU-NSW": "Oceania", "BR-SP": "South America", "CL-SIC": "South America",
        "CA-ON": "North America", "US-TEX-ERCO": "North America", "DE-LU": "Europe",
        "ZA": "Africa", "SG": "Asia", "JP-TK": "Asia"}
    ids = DEFAULT_REGION_IDS
    colours = plots._site_colours(ids)
    assert len({tuple(np.round(c, 3)) for c in colours}) == len(ids)  # every site its own
    order = plots.site_order(ids)
    groups = [plots.continent(ids[s]) for s in order]
    # Each continent is one contiguous run of the stack.
    changes = sum(a != b for a, b in zip(groups[:-1], groups[1:], strict=True))
    assert changes == len(set(groups)) - 1
    # Within a continent the shades share one hue family: the dominant channel is the same.
    for name in set(groups):
        members = [colours[s] for s in range(len(ids)) if plots.continent(ids[s]) == name]
        if name != "Oceania":  # greys have no dominant channel
            assert len({int(np.argmax(c[:3])) for c in members}) == 1, name


def test_allocation_legend_names_continents(tiny_result, monkeypatch) -> None:
    fig = _figure_of(plots.allocation_figure, tiny_result, monkeypatch)
    texts = [t.get_text().strip() for t in fig.legends[0].get_texts()]
    sc = tiny_result.scenario
    assert texts == [entry for name in dict.fromkeys(
        plots.continent(sc.site_ids[s]) for s in plots.site_order(sc.site_ids))
        for entry in (name, *(sc.site_ids[s] for s in plots.site_order(sc.site_ids)
                             if plots.continent(sc.site_ids[s]) == name))]
