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
    with pytest.raises(PipelineError, match="refers to stage 'make', which is not an earlier stage"):
        run_pipeline(bad, progress=False)
    assert not (project_dir / "runs").exists() or not any((project_dir / "runs").iterdir())


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


# --- issue 17, "Runs and their records" -------------------------------------------------------------


def test_unknown_parameter_is_an_error_with_did_you_mean(chain: Path, project_dir: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(chain), "-q", "-p", "nosuchparam=3"]) == 2
    err = capsys.readouterr().err
    assert "parameter 'nosuchparam' is declared by no stage" in err and "'value'" in err
    assert main(["run", str(chain), "-q", "-p", "valeu=3"]) == 2
    assert "did you mean 'value'?" in capsys.readouterr().err
    assert not (project_dir / "runs").exists()  # refused before any run folder is made


def test_stage_parameter_not_declared_is_an_error(chain: Path, project_dir: Path) -> None:
    bad = project_dir / "pipelines" / "undeclared.yaml"
    bad.write_text("name: u\nstages:\n  - name: make\n    notebook: notebooks/make.ipynb\n"
                   "    parameters: {vlaue: 2}\n")
    with pytest.raises(PipelineError, match=r"parameter 'vlaue' is not declared by make.ipynb \(did you mean 'value'"):
        run_pipeline(bad, progress=False)


def test_missing_absolute_notebook_is_a_one_line_error(chain: Path, project_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = project_dir / "pipelines" / "abs.yaml"
    bad.write_text(f"name: a\nstages:\n  - name: x\n    notebook: {project_dir / 'nope.ipynb'}\n")
    assert main(["run", str(bad), "-q"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_failure_before_a_stage_ends_the_run(chain: Path, project_dir: Path) -> None:
    """A stage whose reference cannot be resolved at run time: the run ends 'failed', never stays 'running'."""
    nbs = project_dir / "notebooks"
    _notebook(nbs / "silent.ipynb", "x = 1", "pass")  # records nothing
    bad = project_dir / "pipelines" / "late.yaml"
    bad.write_text("name: late\nstages:\n  - name: make\n    notebook: notebooks/silent.ipynb\n"
                   "  - name: use\n    notebook: notebooks/use.ipynb\n    parameters: {made: '{make.made}'}\n")
    with pytest.raises(PipelineError, match="recorded no output 'made'"):
        run_pipeline(bad, progress=False)
    (run_dir,) = (project_dir / "runs").iterdir()
    record = read_run(run_dir)
    assert record["status"] == "failed" and record["ended"]
    assert record["attempts"][-1]["status"] == "failed"
    assert not (run_dir / "run.lock").exists()


def test_resume_refuses_a_live_run_and_takes_over_a_stale_lock(chain: Path, project_dir: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    record = run_pipeline(chain, progress=False, parameters={"fail": True})
    run_dir = project_dir / "runs" / record["run_id"]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / "run.lock").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(PipelineError, match=f"still running \\(pid {sleeper.pid}"):
            run_pipeline(resume=record["run_id"], progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    # the owner is gone: the lock is stale and the resume goes on
    record = run_pipeline(resume=record["run_id"], progress=False, parameters={"fail": False})
    assert record["status"] == "ok"
    assert not (run_dir / "run.lock").exists()
    assert os.getpid() != sleeper.pid


def test_every_attempt_is_kept_with_its_overrides(chain: Path, project_dir: Path) -> None:
    first = run_pipeline(chain, progress=False, parameters={"fail": True})
    again = run_pipeline(resume=first["run_id"], progress=False, parameters={"fail": False})
    record = read_run(project_dir / "runs" / first["run_id"])
    assert record == json.loads(json.dumps(again, default=str))
    assert record["overrides"] == {"fail": False}
    one, two = record["attempts"]
    assert one["overrides"] == {"fail": True} and one["status"] == "failed"
    assert [(s["name"], s["status"]) for s in one["stages"]] == [("make", "ok"), ("use", "failed")]
    assert one["stages"][1]["error"]["ename"] == "AssertionError"
    assert two["overrides"] == {"fail": False} and two["status"] == "ok"
    assert [(s["name"], s["status"]) for s in two["stages"]] == [("use", "ok")]
    assert all(a["started"] and a["ended"] for a in (one, two))


def test_record_names_workbench_build_and_uses_the_normal_umask(chain: Path, project_dir: Path) -> None:
    import os
    import stat

    from workbench import __version__

    outside = project_dir.parent / f"{project_dir.name}-outside.yaml"  # not in any git repository
    outside.write_text(chain.read_text().replace("notebooks/", f"{project_dir}/notebooks/"))
    old = os.umask(0o022)
    try:
        record = run_pipeline(outside, progress=False)
    finally:
        os.umask(old)
    assert record["git_commit"] is None
    assert record["workbench"]["version"] == __version__
    run_dir = project_dir / "runs" / record["run_id"]
    for name in ("run.json", "report.html"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name


def test_registry_versions_and_catalogue_items_used_are_recorded(project_dir: Path) -> None:
    nbs = project_dir / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "use.ipynb", "n = 1",
              "from workbench.pipeline import record_usage\n"
              "record_usage('models', {'name': 'crop_lstm', 'version': 3, 'source': 'registry'})\n"
              "record_usage('catalogue_items', {'collection': 'sentinel-2-l2a', 'ids': ['a', 'b']})\n"
              "record_usage('models', {'name': 'crop_lstm', 'version': 3, 'source': 'registry'})")
    pipe = project_dir / "p.yaml"
    pipe.write_text("name: p\nstages:\n  - name: use\n    notebook: notebooks/use.ipynb\n")
    record = run_pipeline(pipe, progress=False)
    used = record["stages"][0]["used"]
    assert used["models"] == [{"name": "crop_lstm", "version": 3, "source": "registry"}]
    assert used["catalogue_items"][0]["ids"] == ["a", "b"]


def test_catalogue_search_in_a_run_notes_its_items(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real search path calls record_usage: the ids it found land in the stage's file."""
    from workbench.catalog import search
    from workbench.pipeline import RUN_DIR_ENV, STAGE_ENV
    from workbench.samples.build import build_samples

    build_samples(project_dir / "workbench-data")
    monkeypatch.setenv(RUN_DIR_ENV, str(project_dir / "run"))
    monkeypatch.setenv(STAGE_ENV, "discover")
    items = search("sentinel-2-l2a", [-180, -90, 180, 90], "2000-01-01", "2100-01-01")
    noted = json.loads((project_dir / "run" / "used" / "discover.json").read_text())
    assert noted["catalogue_items"][0]["ids"] == [i.id for i in items]


def test_a_killed_run_ends_interrupted_and_resumes(project_dir: Path) -> None:
    """SIGTERM to `workbench run` while a stage runs: the record says 'interrupted', the lock is gone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    nbs = project_dir / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "slow.ipynb", "seconds = 60", "import time\ntime.sleep(seconds)")
    pipe = project_dir / "slow.yaml"
    pipe.write_text("name: slow\nstages:\n  - name: nap\n    notebook: notebooks/slow.ipynb\n")
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", str(pipe), "-q"], cwd=project_dir,
                            env={**os.environ, "WORKBENCH_PROJECT_DIR": str(project_dir)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        record: dict = {}
        while time.monotonic() < deadline:
            runs = list((project_dir / "runs").glob("*/run.json")) if (project_dir / "runs").exists() else []
            if runs:
                record = json.loads(runs[0].read_text())
                if record["stages"][0]["status"] == "running":
                    break
            time.sleep(0.2)
        assert record.get("stages", [{}])[0].get("status") == "running", "the stage never started"
        time.sleep(2)  # inside the notebook's sleep
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    run_dir = runs[0].parent
    record = read_run(run_dir)
    assert record["status"] == "interrupted" and record["ended"]
    assert record["stages"][0]["status"] == "interrupted"
    assert record["attempts"][0]["status"] == "interrupted"
    assert not (run_dir / "run.lock").exists()
    again = run_pipeline(resume=record["run_id"], progress=False, parameters={"seconds": 0})
    assert again["status"] == "ok" and len(again["attempts"]) == 2


def test_demo_pipeline_validates() -> None:
    """Every stage parameter of demo.yaml is declared by its notebook and every reference names an earlier stage."""
    from workbench.pipeline import validate_pipeline

    demo = load_pipeline(Path(__file__).resolve().parents[1] / "notebooks" / "pipelines" / "demo.yaml")
    declared = validate_pipeline(demo)
    assert set(declared) == {s.name for s in demo.stages}


def test_report_shows_headline_figures_thumbnails_and_map_links(project_dir: Path) -> None:
    """Issue 17 item 7: the report shows what the stages found and drew, not only paths."""
    nbs = project_dir / "notebooks"
    nbs.mkdir()
    path = _notebook(
        nbs / "draw.ipynb", 'data_dir = "workbench-data"',
        "import pandas as pd\npd.DataFrame({'model': ['adhoc'], 'accuracy': [0.9731]})",
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(8, 6)); ax.imshow([[0, 1], [1, 0]]); plt.show()",
        "from pathlib import Path\nm = Path(data_dir) / 'map.html'\nm.parent.mkdir(parents=True, exist_ok=True)\n"
        "m.write_text('<html></html>')\nfrom workbench.pipeline import record_outputs\nrecord_outputs(map_html=m)",
    )
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].metadata["tags"] = ["headline"]
    nbformat.write(nb, path)
    pipe = project_dir / "draw.yaml"
    pipe.write_text("name: draw\nstages:\n  - name: draw\n    notebook: notebooks/draw.ipynb\n")
    record = run_pipeline(pipe, progress=False)
    assert record["status"] == "ok"
    report = (project_dir / "runs" / record["run_id"] / "report.html").read_text()
    assert "0.9731" in report and "<table" in report.split("<h2>Results</h2>")[1]  # the headline table
    thumbs = report.split("data:image/png;base64,")
    assert len(thumbs) == 2  # one picture, as a thumbnail
    import base64
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(thumbs[1].split("'")[0])))
    assert image.width <= 320
    assert "href='file://" in report and "map.html</a>" in report
