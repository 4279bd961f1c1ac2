"""Same inputs, same bytes: two runs (and two plans) of one scenario and seed write the same
results.json and plan JSON byte for byte, except the one ``timing`` object of wall-clock
values."""

from __future__ import annotations

import json
from pathlib import Path

from scenario_helpers import TINY_YAML, run_slit, write_tiny

# One 15-minute interval of the tiny scenario.
ONE_INTERVAL = TINY_YAML.replace('hours: 1}', 'hours: 0.25}')


def _without_timing(text: str) -> str:
    """The JSON text with the top-level ``timing`` object cut out, all else byte for byte (the
    files are written with indent 2, so that object spans from its key to the next line at
    indent 2)."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith('  "timing": '))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("  }"))
    return "".join(lines[:start] + lines[end + 1:])


def test_two_runs_write_the_same_results_json_but_for_timing(tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("SLIT_CACHE_DIR", str(tmp_path / "cache"))
    scenario = write_tiny(tmp_path, ONE_INTERVAL)
    texts = []
    for name in ("a", "b"):
        code, _, err = run_slit(["run", str(scenario), "--out", str(tmp_path / name),
                                 "--workers", "1"], capsys,
                                monkeypatch)
        assert code == 0, err
        texts.append((tmp_path / name / "results.json").read_text(encoding="utf-8"))
    first = json.loads(texts[0])
    assert set(first["timing"]) == {"decision_s", "median_decision_s",
                                    "median_decision_s_by_policy"}
    assert len(first["timing"]["decision_s"]["slit"]) == 1  # one interval
    assert "median_decision_s" not in first  # wall clock lives in timing only
    assert _without_timing(texts[0]) == _without_timing(texts[1])
    # The cut removed the timing object and nothing else.
    stripped = _without_timing(texts[0])
    assert '"timing"' not in stripped and '"decision_s"' not in stripped
    assert len(texts[0].splitlines()) - len(stripped.splitlines()) == \
        len(json.dumps(first["timing"], indent=2, sort_keys=True).splitlines())


def test_two_plans_are_the_same_bytes_but_for_timing(tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    scenario = write_tiny(tmp_path, ONE_INTERVAL)
    texts = []
    for name in ("a.json", "b.json"):
        code, _, err = run_slit(["plan", "--at", "2023-07-12T12:00", "--scenario",
                                 str(scenario), "--output", str(tmp_path / name)], capsys,
                                monkeypatch)
        assert code == 0, err
        texts.append((tmp_path / name).read_text(encoding="utf-8"))
    document = json.loads(texts[0])
    assert set(document["timing"]) == {"issued_at", "decision_s"}
    assert "issued_at" not in document
    assert _without_timing(texts[0]) == _without_timing(texts[1])


def test_a_run_on_ray_writes_the_same_results_json(tmp_path: Path, capsys, monkeypatch) -> None:
    """``slit run --workers 2``: Ray's local runtime runs the MILP's solves, the site simulations
    and the surrogate's training runs as tasks; the results are those of ``--workers 1`` (one
    process, no Ray), and Ray is shut down after it."""
    import ray

    from slit import parallel

    monkeypatch.setenv("SLIT_CACHE_DIR", str(tmp_path / "cache"))
    scenario = write_tiny(tmp_path, ONE_INTERVAL)
    drove_ray: list[bool] = []
    real_driver = parallel.ray_driver
    monkeypatch.setattr(parallel, "ray_driver",
                        lambda: drove_ray.append(real_driver()) or drove_ray[-1])
    texts = []
    for name, extra in (("serial", ["--workers", "1"]), ("ray", ["--workers", "2"])):
        code, _, err = run_slit(["run", str(scenario), "--out", str(tmp_path / name), *extra],
                                capsys, monkeypatch)
        assert code == 0, err
        texts.append((tmp_path / name / "results.json").read_text(encoding="utf-8"))
        assert not ray.is_initialized()
        assert drove_ray and all(drove_ray) == (name == "ray")
        drove_ray.clear()
    assert _without_timing(texts[0]) == _without_timing(texts[1])


def test_ray_options_are_checked_before_any_work(tmp_path: Path, capsys, monkeypatch) -> None:
    for args, field in ((["--workers", "0"], "--workers"),
                        (["--workers", "2", "--address", "auto"], "--workers")):
        code, out, err = run_slit(["run", "--out", str(tmp_path / "r"), *args], capsys,
                                  monkeypatch)
        assert code == 2 and field in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r").exists()
