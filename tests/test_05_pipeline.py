"""Papermill pipelines: run records, paths passed between stages, a failing stage and --resume, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from workbench.cli import main
from workbench.errors import PipelineError
from workbench.pipeline import load_pipeline, read_run, record_outputs, run_pipeline


def _notebook(path: Path, parameters: str, *body: str) -> Path:
    cell = new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, *(new_code_cell(b) for b in body)])
    nb.metadata["kernelspec"] = {"name": "workbench", "display_name": "ExtremeEarth Workbench", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def chain(project_dir: Path) -> Path:
    """Two stages: 'make' writes a file and records it; 'use' reads it through a reference."""
    nbs = project_dir / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "make.ipynb", 'data_dir = "workbench-data"\nvalue = 1',
              "from pathlib import Path\nout = Path(data_dir) / 'made.txt'\nout.parent.mkdir(parents=True, exist_ok=True)\n"
              "out.write_text(str(value * 21))",
              "from workbench.pipeline import record_outputs\nrecord_outputs(made=out)")
    _notebook(nbs / "use.ipynb", 'made = ""\nfail = False',
              "assert not fail, 'asked to fail'",
              "from pathlib import Path\nresult = Path(made).parent / 'result.txt'\n"
              "result.write_text(str(int(Path(made).read_text()) * 2))",
              "from workbench.pipeline import record_outputs\nrecord_outputs(report=result)")
    pipeline = project_dir / "pipelines" / "chain.yaml"
    pipeline.parent.mkdir()
    pipeline.write_text(
        "name: chain\nparameters:\n  value: 2\n  fail: false\nstages:\n"
        "  - name: make\n    notebook: notebooks/make.ipynb\n"
        "  - name: use\n    notebook: notebooks/use.ipynb\n    parameters:\n      made: '{make.made}'\n"
    )
    return pipeline


def test_run_record(chain: Path, project_dir: Path) -> None:
    record = run_pipeline(chain, progress=False)
    assert record["status"] == "ok"
    run_dir = project_dir / "runs" / record["run_id"]
    on_disk = read_run(run_dir)
    assert on_disk == json.loads(json.dumps(record, default=str))
    assert [s["status"] for s in on_disk["stages"]] == ["ok", "ok"]
    assert (run_dir / "01_make.ipynb").exists() and (run_dir / "02_use.ipynb").exists()
    assert (project_dir / "workbench-data" / "result.txt").read_text() == "84"
    make, use = on_disk["stages"]
    assert make["parameters"] == {"value": 2}  # shared parameters go only where declared
    assert use["parameters"]["made"] == str(project_dir / "workbench-data" / "made.txt")
    assert use["inputs"]["made"]["sha256"] == make["outputs"]["made"]["sha256"]
    assert len(make["outputs"]["made"]["sha256"]) == 64
    for key in ("package_versions", "git_commit", "started", "ended", "parameters", "settings"):
        assert key in on_disk
    assert on_disk["package_versions"]["papermill"]
    report = (run_dir / "report.html").read_text()
    assert "01_make.ipynb" in report and "made.txt" in report and "chain run" in report


def test_failing_stage_and_resume(chain: Path, project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(chain), "-q", "-p", "fail=true"])
    assert code == 1
    err = capsys.readouterr().err
    assert "stage 'use' failed: AssertionError: asked to fail" in err
    run_id = err.split("workbench run --resume ")[1].split()[0]
    run_dir = project_dir / "runs" / run_id
    record = read_run(run_dir)
    assert record["status"] == "failed" and record["failed_stage"] == "use"
    assert [s["status"] for s in record["stages"]] == ["ok", "failed"]
    kept = nbformat.read(run_dir / "02_use.ipynb", as_version=4)
    assert any(o.get("ename") == "AssertionError" for c in kept.cells for o in c.get("outputs", []))
    made_before = (project_dir / "workbench-data" / "made.txt").stat().st_mtime_ns

    code = main(["run", "--resume", run_id, "-q", "-p", "fail=false"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"run record: {run_dir / 'run.json'}" in out
    assert f"report: {run_dir / 'report.html'}" in out
    record = read_run(run_dir)
    assert record["status"] == "ok" and [s["status"] for s in record["stages"]] == ["ok", "ok"]
    assert len(record["resumed"]) == 1
    assert (project_dir / "workbench-data" / "made.txt").stat().st_mtime_ns == made_before  # not re-run
    with pytest.raises(PipelineError, match="nothing to resume"):
        run_pipeline(resume=run_id, progress=False)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("stages: []\n", "non-empty list"),
        ("name: x\nstages:\n  - name: a\n    notebook: nope.ipynb\n", "does not exist"),
        ("name: x\nstagez: []\n", "unknown key"),
        ("name: x\nstages:\n  - notebook: notebooks/make.ipynb\n", "'name' must be an identifier"),
        ("name: x\nstages:\n  - {name: a, notebook: notebooks/make.ipynb}\n  - {name: a, notebook: notebooks/make.ipynb}\n",
         "duplicate stage"),
        ("name: x\nstages:\n  - {name: a, notebook: notebooks/make.ipynb, parameters: [1]}\n", "must be a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_bad_pipeline_files(chain: Path, project_dir: Path, content: str, needle: str) -> None:
    bad = project_dir / "pipelines" / "bad.yaml"
    bad.write_text(content)
    with pytest.raises(PipelineError, match=needle):
        load_pipeline(bad)


def test_reference_to_missing_output(chain: Path, project_dir: Path) -> None:
    bad = project_dir / "pipelines" / "ref.yaml"
    bad.write_text("name: ref\nstages:\n  - name: use\n    notebook: notebooks/use.ipynb\n"
                   "    parameters: {made: '{make.made}'}\n")
    with pytest.raises(PipelineError, match="stage 'make' recorded no output 'made'"):
        run_pipeline(bad, progress=False)


def test_missing_kernel_is_a_clear_error(chain: Path) -> None:
    with pytest.raises(PipelineError, match="kernel 'no-such-kernel' is not installed"):
        run_pipeline(chain, kernel="no-such-kernel", progress=False)


def test_cli_errors(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "give a pipeline file" in capsys.readouterr().err
    assert main(["run", str(chain), "-p", "novalue"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["run", "--resume", "no-such-run"]) == 2
    assert "no run record" in capsys.readouterr().err
    assert main(["search", "sentinel-2-l2a", "--bbox", "16", "45", "14", "47", "--start", "2023-01-01",
                 "--end", "2023-02-01"]) == 2
    assert "west" in capsys.readouterr().err


def test_record_outputs_outside_a_run(tmp_path: Path) -> None:
    assert record_outputs(x=tmp_path / "a") == {"x": str(tmp_path / "a")}
    assert not (tmp_path / "outputs").exists()
