"""Replay of pipeline runs and the run records on the command line (issue 13, items 3, 4 and 5).

``workbench run --replay RUN_ID`` re-executes a run from its ``run.json`` into a new run; with op determinism on
(``--deterministic``), the demo's Polar chain, small (preprocess_s1 -> seaice_patches -> train_seaice ->
seaice_chart), replays to identical output checksums. Both runs go through the real command-line Dask cluster
(``dask_cli_cluster``, with ``WORKBENCH_DASK_ADDRESS``): this is also the Polar chain of issue 13 item 3, run here
so that the suite runs that chain once, not three times; the workers must leave no file in their own directories.
``workbench runs list/show/diff``, and clear errors for bad input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import nbformat
import numpy as np
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from workbench.cli import main
from workbench.errors import PipelineError
from workbench.pipeline import load_pipeline, read_run, run_pipeline, validate_pipeline
from workbench.runs import ReplayWarning, diff_runs, list_runs

ROOT = Path(__file__).resolve().parents[1]


def _polar_chain(directory: Path) -> Path:
    """preprocess_s1 -> seaice_patches -> train_seaice -> seaice_chart of the demo, small (a 512-pixel window)."""
    demo = yaml.safe_load((ROOT / "notebooks" / "pipelines" / "demo.yaml").read_text())
    small = {
        "preprocess_s1": {"size": 512, "chunk": 64},
        "seaice_patches": {"patch_size": 16, "stride": 8, "block": 32},
        "train_seaice": {"epochs": 1, "vgg_epochs": 1, "vgg_width": 0.125, "register": False},
    }
    small["seaice_chart"] = {}
    stages = [{**s, "notebook": str(ROOT / s["notebook"]), "parameters": {**s["parameters"], **small[s["name"]]}}
              for s in demo["stages"] if s["name"] in small]
    directory.mkdir(parents=True, exist_ok=True)
    pipeline = directory / "polar.yaml"
    pipeline.write_text(yaml.safe_dump({"name": "polar-short", "kernel": "python3", "stages": stages,
                                        "parameters": {"dask_address": "", "data_dir": "data"}}))
    return pipeline


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, dask_cli_cluster: str) -> Iterator[dict[str, Any]]:
    """A deterministic run of the short Polar chain on the CLI cluster, and its replay into a fresh project (CLI)."""
    from distributed import Client

    from tests.test_04_cli_cluster import Cluster, _worker_dirs
    from workbench.errors import DataError
    from workbench.samples.sarsen_assets import find_grd_safe

    try:
        assets = find_grd_safe().parent
    except DataError as exc:
        pytest.skip(str(exc))
    project = tmp_path_factory.mktemp("replay")
    fresh = tmp_path_factory.mktemp("replay-fresh")
    with pytest.MonkeyPatch.context() as mp, Client(dask_cli_cluster, timeout=30, set_as_default=False) as client:
        dirs = [tuple(Path(p).resolve() for p in d) for d in client.run(_worker_dirs).values()]
        cluster = Cluster(dask_cli_cluster, client, dirs)  # type: ignore[arg-type]
        strays = cluster.stray_files()
        mp.setenv("WORKBENCH_PROJECT_DIR", str(project))
        mp.setenv("WORKBENCH_DASK_ADDRESS", dask_cli_cluster)
        mp.setenv("SARSEN_ASSETS_DIR", str(assets))
        for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            mp.setenv(var, "1")
        mp.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
        mp.chdir(project)
        first = run_pipeline(_polar_chain(project / "pipelines"), progress=False, deterministic=True)
        assert first["status"] == "ok", [s.get("error") for s in first["stages"]]
        assert main(["run", "--replay", first["run_id"], "--quiet", "--project-dir", str(fresh)]) == 0
        runs = [r["run_id"] for r in list_runs()]
        second = read_run(project / "runs" / next(r for r in runs if r != first["run_id"]))
        yield {"project": project, "fresh": fresh, "first": first, "second": second, "cluster": cluster,
               "strays_before": strays}


def test_replay_is_a_new_run_of_the_same_pipeline_and_parameters(replayed: dict[str, Any]) -> None:
    first, second = replayed["first"], replayed["second"]
    assert second["run_id"] != first["run_id"] and second["status"] == "ok"
    assert second["replay"]["of"] == first["run_id"] and second["replay"]["package_changes"] == {}
    assert not second["replay"]["pipeline_changed"]
    for key in ("pipeline_file", "pipeline_sha256", "overrides", "parameters", "kernel"):
        assert second[key] == first[key], key
    assert first["project_dir"] == str(replayed["project"]) and second["project_dir"] == str(replayed["fresh"])
    assert first["deterministic"] is True and second["deterministic"] is True
    moved = json.dumps([s["parameters"] for s in first["stages"]]).replace(str(replayed["project"]),
                                                                          str(replayed["fresh"]))
    assert [s["parameters"] for s in second["stages"]] == json.loads(moved)  # references into its own project


def test_polar_chain_ran_on_the_cli_cluster_through_the_storage_layer(replayed: dict[str, Any]) -> None:
    """S1 preprocessing ran on the CLI workers; outputs are in each run's project; no worker wrote in its own dirs."""
    from workbench.storage import open_zarr

    cluster = replayed["cluster"]
    assert any(p.startswith("sigma0") for p in cluster.task_prefixes()), "S1 preprocessing did not use the cluster"
    assert cluster.stray_files() == replayed["strays_before"], "a worker wrote in its own cwd or TMPDIR"
    for run, project in ((replayed["first"], replayed["project"]), (replayed["second"], replayed["fresh"])):
        outputs = {s["name"]: s["outputs"] for s in run["stages"]}
        for stage, out in outputs.items():
            for key, entry in out.items():
                assert Path(entry["path"]).exists() and entry["sha256"], f"{stage}.{key}"
                assert Path(entry["path"]).is_relative_to(project), f"{stage}.{key} is outside the project"
        cube = open_zarr(outputs["preprocess_s1"]["cube"]["path"]).load()
        assert np.isfinite(cube["sar"].values).mean() > 0.5, "chunks written by the workers are missing"
        assert Path(outputs["seaice_chart"]["cog"]["path"]).stat().st_size > 0


def test_deterministic_replay_gives_identical_checksums(replayed: dict[str, Any],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    first, second = replayed["first"], replayed["second"]
    rows = diff_runs(first["run_id"], second["run_id"])
    names = {f"{r['stage']}.{r['output']}" for r in rows}
    assert {"preprocess_s1.cube", "seaice_patches.patches", "seaice_patches.feature_store",
            "train_seaice.adhoc_model", "train_seaice.vgg16_model", "seaice_chart.cog", "seaice_chart.polygons"} <= names
    assert all(r["a"] for r in rows), rows
    assert [r for r in rows if not r["same"]] == []
    capsys.readouterr()
    assert main(["runs", "diff", first["run_id"], second["run_id"]]) == 0
    out = capsys.readouterr().out
    assert f"{len(rows)} of {len(rows)} output(s) identical" in out and "train_seaice.vgg16_model" in out


def test_runs_list_and_show(replayed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    first, second = replayed["first"], replayed["second"]
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert first["run_id"] in out and second["run_id"] in out and "polar-short" in out
    assert main(["runs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["run_id"]: r["replay_of"] for r in rows}[second["run_id"]] == first["run_id"]
    assert main(["runs", "show", second["run_id"]]) == 0
    out = capsys.readouterr().out
    assert f"replay of {first['run_id']}" in out and "train_seaice.adhoc_model" in out and "sha256" in out
    assert main(["runs", "show", second["run_id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == second["run_id"]


# ------------------------------------------------------------- a quick chain for the checks and the errors

def _notebook(path: Path, parameters: str, *body: str) -> Path:
    cell = new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, *(new_code_cell(b) for b in body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def quick(project_dir: Path) -> dict[str, Any]:
    """One stage writing ``value * 21`` and recording it; run once."""
    _notebook(project_dir / "make.ipynb", 'data_dir = "workbench-data"\nvalue = 1',
              "from pathlib import Path\nout = Path(data_dir) / 'made.txt'\nout.parent.mkdir(parents=True, exist_ok=True)\n"
              "out.write_text(str(value * 21))",
              "from workbench.pipeline import record_outputs\nrecord_outputs(made=out)")
    pipeline = project_dir / "quick.yaml"
    pipeline.write_text("name: quick\nkernel: python3\nparameters:\n  value: 2\nstages:\n"
                        "  - name: make\n    notebook: make.ipynb\n")
    record = run_pipeline(pipeline, progress=False)
    assert record["status"] == "ok"
    return {"pipeline": pipeline, "record": record, "run_dir": project_dir / "runs" / record["run_id"]}


def test_diff_shows_a_changed_output(quick: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    other = run_pipeline(quick["pipeline"], parameters={"value": 3}, progress=False)
    assert main(["runs", "diff", quick["record"]["run_id"], other["run_id"]]) == 1
    out = capsys.readouterr().out
    assert "make.made" in out and "DIFFERENT" in out and "0 of 1 output(s) identical" in out
    again = run_pipeline(replay=other["run_id"], progress=False)
    assert again["overrides"] == {"value": 3} and diff_runs(other["run_id"], again["run_id"])[0]["same"]


def test_replay_warns_about_changed_packages_and_pipeline(quick: dict[str, Any]) -> None:
    record = dict(quick["record"])
    record["package_versions"] = {**record["package_versions"], "numpy": "0.0.1", "gone-package": "1.0"}
    (quick["run_dir"] / "run.json").write_text(json.dumps(record))
    quick["pipeline"].write_text(quick["pipeline"].read_text() + "# edited\n")
    with pytest.warns(ReplayWarning) as caught:
        again = run_pipeline(replay=record["run_id"], progress=False)
    text = " ".join(str(w.message) for w in caught)
    assert "numpy 0.0.1 ->" in text and "gone-package 1.0 -> (absent)" in text and "pipeline file" in text
    assert again["status"] == "ok" and again["replay"]["pipeline_changed"]
    assert again["replay"]["package_changes"]["numpy"]["run"] == "0.0.1"


def test_replay_and_runs_errors(quick: dict[str, Any], project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = quick["record"]["run_id"]

    def error(argv: list[str]) -> str:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    assert "no run 'nope'" in error(["run", "--replay", "nope"])
    assert f"did you mean {run_id!r}" in error(["runs", "show", run_id[:-1] + "x"])
    assert "is not a run id" in error(["runs", "show", "../etc"])
    assert "no run 'nope'" in error(["runs", "diff", run_id, "nope"])
    assert "not both" in error(["run", "--replay", run_id, "--resume", run_id])
    assert "leave out" in error(["run", str(quick["pipeline"]), "--replay", run_id])
    assert "no run 'x'" in error(["runs", "show", "x", "--runs-dir", str(project_dir / "elsewhere")])
    # a corrupt record, one that is not a run record, one whose pipeline file is gone
    broken = project_dir / "runs" / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    assert "is not valid JSON" in error(["run", "--replay", "broken"])
    assert "is not valid JSON" in error(["runs", "show", "broken"])
    assert main(["runs", "list"]) == 0
    assert "unreadable" in capsys.readouterr().out
    (broken / "run.json").write_text("[1, 2]")
    assert "is not a JSON object" in error(["runs", "diff", "broken", run_id])
    (broken / "run.json").write_text(json.dumps({"run_id": "broken"}))
    assert "lacks ['pipeline_file', 'stages']" in error(["runs", "show", "broken"])
    record = dict(quick["record"], pipeline_file=str(project_dir / "moved.yaml"))
    (broken / "run.json").write_text(json.dumps(record))
    assert "no longer exists" in error(["run", "--replay", "broken"])
    with pytest.raises(PipelineError, match="not both"):
        run_pipeline(resume=run_id, replay=run_id)


def test_runs_list_when_there_is_none(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list"]) == 0
    assert "no run yet" in capsys.readouterr().out


def test_full_pipeline_validates_and_has_the_paper_sizes() -> None:
    """notebooks/pipelines/full.yaml (the GPU-cluster run) loads and validates; it is never run here."""
    full = load_pipeline(ROOT / "notebooks" / "pipelines" / "full.yaml")
    demo = load_pipeline(ROOT / "notebooks" / "pipelines" / "demo.yaml")
    assert set(validate_pipeline(full)) == {s.name for s in full.stages} == {s.name for s in demo.stages}
    stages = {s.name: s.parameters for s in full.stages}
    assert stages["train_seaice"]["vgg_width"] == 1.0
    crops = stages["train_crops"]
    assert crops["grid_layers"] == [2, 3, 4] and crops["grid_cells"] == [100, 125, 200, 225, 300]
    assert crops["learning_rate"] == 1e-3 and "weight_decay" in crops
    assert "weight decay" in (ROOT / "notebooks" / "pipelines" / "full.yaml").read_text().lower()
    assert {s.name: s.parameters for s in demo.stages}["train_seaice"]["vgg_width"] < 1.0  # the demo stays small


def test_content_checksums_leave_out_write_stamps(tmp_path: Path) -> None:
    """The same content written at two times, under two random ids, checksums the same; other content does not."""
    import zipfile

    from workbench.pipeline import checksum

    def write(folder: Path, uid: str, when: str, value: int) -> Path:
        (folder / f"part-{uid}.json").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"part-{uid}.json").write_text(json.dumps({"created_at": when, "value": value, "ref": uid}))
        with zipfile.ZipFile(folder / "model.keras", "w") as archive:
            archive.writestr(zipfile.ZipInfo("metadata.json", date_time=(2020, 1, 1, int(when[-2:]), 0, 0)),
                             json.dumps({"date_saved": when, "keras_version": "3"}))
            shared = {"shared_object_id": 1000 + int(when[-2:])}  # Keras: id() of a shared object when saved
            archive.writestr("config.json", json.dumps({"layers": [{"init": shared}, {"init": shared}]}))
            archive.writestr("model.weights.h5", bytes([value]) * 10)
        return folder

    a = write(tmp_path / "a", "0" * 32, "2026-01-01T00:01", 1)
    b = write(tmp_path / "b", "f" * 32, "2026-01-01T00:02", 1)
    c = write(tmp_path / "c", "e" * 32, "2026-01-01T00:03", 2)
    assert checksum(a) == checksum(b) != checksum(c)
    assert checksum(a / "model.keras") == checksum(b / "model.keras") != checksum(c / "model.keras")
    assert checksum(tmp_path / "missing") is None and checksum("s3://bucket/key") is None
    shutil.rmtree(c)
