"""`make bench` runs every benchmark (issue 17, item 19): the runner's choice of arguments and its table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _runner():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["run_all"] = module
    spec.loader.exec_module(module)
    return module


def test_makefile_bench_uses_the_runner() -> None:
    makefile = (ROOT / "Makefile").read_text()
    bench = makefile.split("\nbench:")[1].split("\n\n")[0]
    assert "benchmarks/run_all.py" in bench and "--small ||" not in bench


def test_every_benchmark_is_run_and_compliance_needs_its_suite(tmp_path: Path) -> None:
    run_all = _runner()
    files = run_all.benchmark_files()
    assert {f.stem for f in files} >= {"geosparql_compliance", "seaice_classify", "time_travel"}
    assert all(f.name != "run_all.py" for f in files)
    compliance = ROOT / "benchmarks" / "geosparql_compliance.py"
    skipped = run_all.arguments_for(compliance, suite=tmp_path / "absent")
    assert isinstance(skipped, str) and "skipped" in skipped and "absent" in skipped
    assert run_all.arguments_for(compliance, suite=tmp_path) == ["--suite", str(tmp_path)]
    assert run_all.arguments_for(ROOT / "benchmarks" / "time_travel.py") == ["--small"]


def test_runner_keeps_each_headline_and_reports_failures(tmp_path: Path) -> None:
    run_all = _runner()
    good = tmp_path / "good.py"
    good.write_text("print('warming up')\nprint('ratio: 3.2x over baseline')\nprint()\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('half way')\nsys.exit(3)\n")
    ok = run_all.run(good, [])
    failed = run_all.run(bad, [])
    assert (ok.status, ok.headline) == ("ok", "ratio: 3.2x over baseline")
    assert failed.status == "failed" and failed.headline == "exit 3: half way"
    text = run_all.table([ok, failed, run_all.Outcome("x", "skipped", 0.0, "skipped: no suite")])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["benchmark", "status", "seconds"]
    assert "ratio: 3.2x over baseline" in lines[1] and "exit 3" in lines[2] and "skipped" in lines[3]
