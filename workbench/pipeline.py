"""Papermill chains of notebook stages, with a run record (``run.json``) per run.

A pipeline file (YAML)::

    name: demo
    kernel: workbench              # optional, default "workbench"
    parameters: {dask_address: ""} # given to every stage whose notebook declares them
    stages:
      - name: setup
        notebook: notebooks/00_setup.ipynb
        parameters: {}             # always injected
      - name: discover
        notebook: notebooks/01_discover.ipynb
        parameters: {items: "{setup.catalog}"}   # an output path recorded by stage "setup"

Each stage runs with papermill into ``runs/<run-id>/NN_<stage>.ipynb``. Stages
exchange paths: a notebook calls :func:`record_outputs` and later stages refer
to those paths as ``"{stage.output}"``. A failing stage stops the chain, keeps
its partly executed notebook and marks the run failed; :func:`run_pipeline`
with ``resume=RUN_ID`` continues from the failed stage.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import yaml

from workbench._args import did_you_mean
from workbench.errors import PipelineError
from workbench.storage import file_lock, write_bytes

__all__ = [
    "Stage",
    "Pipeline",
    "load_pipeline",
    "run_pipeline",
    "record_outputs",
    "record_usage",
    "read_run",
    "validate_pipeline",
    "checksum",
    "DETERMINISM_ENV",
    "RUN_DIR_ENV",
    "STAGE_ENV",
]

log = logging.getLogger(__name__)

RUN_DIR_ENV = "WORKBENCH_RUN_DIR"
STAGE_ENV = "WORKBENCH_STAGE"
PROJECT_ENV = "WORKBENCH_PROJECT_DIR"
#: Environment of the notebook kernels of a deterministic run: TensorFlow op determinism (read by TensorFlow's
#: C++ core at start, as ``tf.config.experimental.enable_op_determinism`` sets it) and a fixed ``hash()`` seed.
DETERMINISM_ENV = {"TF_DETERMINISTIC_OPS": "1", "PYTHONHASHSEED": "0"}
_REFERENCE = re.compile(r"^\{([A-Za-z_][\w-]*)\.([A-Za-z_]\w*)\}$")
_STAGE_NAME = re.compile(r"^[A-Za-z_][\w-]*$")
_VERSIONED_PACKAGES = (
    "extremeearth-workbench", "numpy", "pandas", "xarray", "dask", "distributed", "zarr", "rasterio",
    "geopandas", "shapely", "pystac", "pystac-client", "papermill", "tensorflow-cpu", "tensorflow",
    "keras", "optuna", "mlflow-skinny", "deltalake", "pyoxigraph",
)


@dataclass(frozen=True)
class Stage:
    """One notebook of a pipeline."""

    name: str
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline file."""

    name: str
    path: Path
    stages: tuple[Stage, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    kernel: str = "workbench"
    description: str = ""


def _resolve_notebook(notebook: str, pipeline_path: Path) -> Path:
    """Find a notebook path relative to the CWD or to an ancestor of the pipeline file."""
    candidate = Path(notebook)
    if candidate.is_absolute():
        if not candidate.is_file():
            raise PipelineError(f"pipeline {pipeline_path}: notebook {notebook!r} does not exist")
        return candidate
    if candidate.exists():
        return candidate.resolve()
    for base in pipeline_path.resolve().parents:
        if (base / candidate).exists():
            return (base / candidate).resolve()
    raise PipelineError(f"pipeline {pipeline_path}: notebook {notebook!r} does not exist")


def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Read and validate a pipeline YAML file.

    Raises
    ------
    PipelineError
        When the file is missing, not YAML, or its keys/stages are malformed;
        the message names the file and the offending key or stage.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"pipeline file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"pipeline file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"pipeline file {path}: expected a mapping with 'name' and 'stages'")
    unknown = set(data) - {"name", "description", "kernel", "parameters", "stages"}
    if unknown:
        raise PipelineError(f"pipeline file {path}: unknown key(s) {sorted(unknown)}")
    stages_data = data.get("stages")
    if not isinstance(stages_data, list) or not stages_data:
        raise PipelineError(f"pipeline file {path}: 'stages' must be a non-empty list")
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise PipelineError(f"pipeline file {path}: 'parameters' must be a mapping")
    stages: list[Stage] = []
    for index, entry in enumerate(stages_data):
        where = f"pipeline file {path}, stage {index + 1}"
        if not isinstance(entry, dict):
            raise PipelineError(f"{where}: expected a mapping with 'name' and 'notebook'")
        unknown = set(entry) - {"name", "notebook", "parameters"}
        if unknown:
            raise PipelineError(f"{where}: unknown key(s) {sorted(unknown)}")
        name = entry.get("name")
        if not isinstance(name, str) or not _STAGE_NAME.match(name):
            raise PipelineError(f"{where}: 'name' must be an identifier, got {name!r}")
        if any(s.name == name for s in stages):
            raise PipelineError(f"{where}: duplicate stage name {name!r}")
        if not isinstance(entry.get("notebook"), str):
            raise PipelineError(f"{where} ({name}): 'notebook' must be a path")
        stage_params = entry.get("parameters") or {}
        if not isinstance(stage_params, dict):
            raise PipelineError(f"{where} ({name}): 'parameters' must be a mapping")
        stages.append(Stage(name, _resolve_notebook(entry["notebook"], path), stage_params))
    return Pipeline(
        name=str(data.get("name") or path.stem),
        path=path.resolve(),
        stages=tuple(stages),
        parameters=parameters,
        kernel=str(data.get("kernel") or "workbench"),
        description=str(data.get("description") or ""),
    )


def record_outputs(**paths: str | os.PathLike[str]) -> dict[str, str]:
    """Record output paths of the current stage so later stages and ``run.json`` see them.

    Inside a pipeline run (the runner sets ``WORKBENCH_RUN_DIR`` and
    ``WORKBENCH_STAGE`` for the kernel) the paths are merged into
    ``<run dir>/outputs/<stage>.json``. Outside a run, nothing is written and
    the paths are only returned, so a notebook runs the same interactively.

    Returns
    -------
    dict
        The recorded outputs, as absolute paths or URLs.
    """
    recorded = {k: (str(v) if "://" in str(v) else str(Path(v).resolve())) for k, v in paths.items()}
    run_dir, stage = os.environ.get(RUN_DIR_ENV), os.environ.get(STAGE_ENV)
    if not run_dir or not stage:
        log.info("not in a pipeline run; outputs not recorded: %s", recorded)
        return recorded
    target = Path(run_dir) / "outputs" / f"{stage}.json"
    existing = json.loads(target.read_text()) if target.exists() else {}
    existing.update(recorded)
    write_bytes(target, json.dumps(existing, indent=2).encode())
    return recorded


def checksum(path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None) -> str | None:
    """SHA-256 over the content of a file or folder, without the stamps writers add; None if absent or remote.

    Archive member times, Keras' ``date_saved``, the feature store's random commit ids and dates, Delta-log
    commit times and durations are left out (:func:`workbench._checksum.content_checksum`), so that two
    deterministic runs of a stage give the same checksum. ``base`` (the run's project directory) is masked
    where the content names it, so that a replay into another project directory compares equal.
    """
    from workbench._checksum import content_checksum

    return content_checksum(path, base=base)


def _package_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _git_commit(directory: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _resolve_references(value: Any, outputs: Mapping[str, Mapping[str, str]], stage: str) -> Any:
    if isinstance(value, str):
        match = _REFERENCE.match(value)
        if match:
            source, key = match.groups()
            if source not in outputs or key not in outputs[source]:
                raise PipelineError(
                    f"stage {stage!r}: parameter refers to {value!r}, but stage {source!r} recorded no output {key!r}"
                )
            return outputs[source][key]
        return value
    if isinstance(value, list):
        return [_resolve_references(v, outputs, stage) for v in value]
    if isinstance(value, dict):
        return {k: _resolve_references(v, outputs, stage) for k, v in value.items()}
    return value


def _path_inputs(parameters: Mapping[str, Any], cwd: Path) -> dict[str, dict[str, str | None]]:
    """Parameters whose values name existing files or folders, with their checksums."""
    inputs = {}
    for key, value in parameters.items():
        if isinstance(value, str) and value and "://" not in value and len(value) < 4096:
            p = Path(value) if Path(value).is_absolute() else cwd / value
            if p.exists() and p != cwd:
                inputs[key] = {"path": str(p), "sha256": checksum(p)}
    return inputs


def _check_kernel(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise PipelineError(
            f"Jupyter kernel {kernel!r} is not installed; run `make install` "
            f"(jupyter kernelspec install --sys-prefix kernels/{kernel}) or pass --kernel python3"
        ) from None


def read_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``run.json`` record of a run directory."""
    path = Path(run_dir) / "run.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"no run record at {path}") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"run record {path} is not valid JSON: {exc}") from None


def _write_record(run_dir: Path, record: dict[str, Any]) -> None:
    write_bytes(run_dir / "run.json", json.dumps(record, indent=2, default=str).encode())
    from workbench.report import render_report

    write_bytes(run_dir / "report.html", render_report(record).encode())


def _declared_parameters(notebook: Path) -> set[str]:
    import papermill

    try:
        return set(papermill.inspect_notebook(str(notebook)))
    except Exception as exc:  # noqa: BLE001 - bad notebook JSON, unreadable file
        raise PipelineError(f"notebook {notebook} cannot be read: {exc}") from None


def _references(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, str):
        match = _REFERENCE.match(value)
        return [match.groups()] if match else []  # type: ignore[list-item]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _references(v)]
    return []


def validate_pipeline(
    pipeline: Pipeline, *, overrides: Mapping[str, Any] | None = None, kernel: str | None = None
) -> dict[str, set[str]]:
    """Check a whole pipeline before anything runs; return each stage's declared parameters.

    Checks that every notebook can be read, that every stage parameter and every
    override is declared by a notebook (with a "did you mean"), that every
    ``{stage.output}`` reference names an earlier stage, and that the kernel is
    installed.

    Raises
    ------
    PipelineError
        On the first problem found, naming the stage, parameter or kernel.
    """
    _check_kernel(kernel or pipeline.kernel)
    declared: dict[str, set[str]] = {}
    for stage in pipeline.stages:
        names = _declared_parameters(stage.notebook)
        for key in stage.parameters:
            if key not in names:
                raise PipelineError(
                    f"stage {stage.name!r}: parameter {key!r} is not declared by {stage.notebook.name}"
                    f"{did_you_mean(key, names)}; it declares {sorted(names)}"
                )
        for source, _key in _references(stage.parameters):
            if source not in declared:
                raise PipelineError(
                    f"stage {stage.name!r}: a parameter refers to stage {source!r}, which is not an earlier "
                    f"stage of the pipeline (earlier stages: {list(declared)})"
                )
        declared[stage.name] = names
    every = set().union(*declared.values()) if declared else set()
    for key in overrides or {}:
        if key not in every:
            raise PipelineError(
                f"parameter {key!r} is declared by no stage of pipeline {pipeline.name!r}"
                f"{did_you_mean(key, every)}; the stages declare {sorted(every)}"
            )
    return declared


def _workbench_build() -> dict[str, str | None]:
    from workbench import __version__

    return {"version": __version__, "commit": _git_commit(Path(__file__).resolve().parent)}


def record_usage(kind: str, entry: Mapping[str, Any]) -> None:
    """Note, inside a pipeline run, a registry version or catalogue items a stage used.

    The runner adds them to the stage's ``used`` entry of ``run.json``. Outside a
    run (no ``WORKBENCH_RUN_DIR``/``WORKBENCH_STAGE``) this does nothing, and a
    failure to note never fails the caller's work.
    """
    run_dir, stage = os.environ.get(RUN_DIR_ENV), os.environ.get(STAGE_ENV)
    if not run_dir or not stage:
        return
    target = Path(run_dir) / "used" / f"{stage}.json"
    try:
        with file_lock(target.with_suffix(".lock")):
            existing = json.loads(target.read_text()) if target.exists() else {}
            items = existing.setdefault(kind, [])
            value = json.loads(json.dumps(dict(entry), default=str))
            if value not in items:
                items.append(value)
            write_bytes(target, json.dumps(existing, indent=1).encode())
    except (OSError, ValueError) as exc:
        log.warning("could not note the %s used by stage %s: %s", kind, stage, exc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _RunLock:
    """``<run dir>/run.lock``: the pid and host of the process running the run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "run.lock"

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    owner = {}
                pid = int(owner.get("pid") or 0)
                if pid and owner.get("host") == me["host"] and _pid_alive(pid) and pid != os.getpid():
                    raise PipelineError(
                        f"run {self.path.parent.name} is still running (pid {pid} since {owner.get('since')}); "
                        "wait for it or stop that process before resuming"
                    ) from None
                if pid and owner.get("host") not in (None, me["host"]):
                    raise PipelineError(
                        f"run {self.path.parent.name} is locked by pid {pid} on host {owner.get('host')}; "
                        f"remove {self.path} if that process is gone"
                    ) from None
                log.warning("removing the stale lock of run %s (pid %s is gone)", self.path.parent.name, pid)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            return
        raise PipelineError(f"could not lock run {self.path.parent.name}")

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


class _Terminated(BaseException):
    """Raised in the runner's main thread when it receives SIGTERM or SIGHUP."""


@contextlib.contextmanager
def _signals_raise() -> Any:
    """Turn SIGTERM/SIGHUP into an exception, so a killed run ends as ``interrupted``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _handler(signum: int, _frame: Any) -> None:
        raise _Terminated(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _attempt_summary(record: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "started": _now(), "ended": None, "status": "running", "overrides": dict(overrides),
        "parameters": dict(record.get("parameters") or {}), "stages": [],
    }


def _close_attempt(record: dict[str, Any], status: str) -> None:
    attempt = record["attempts"][-1]
    attempt.update(status=status, ended=_now())
    attempt["stages"] = [
        {k: s.get(k) for k in ("name", "status", "started", "ended", "error")}
        for s in record["stages"] if s.get("attempt") == len(record["attempts"])
    ]


def run_pipeline(
    pipeline_file: str | os.PathLike[str] | None = None,
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    project_dir: str | os.PathLike[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    kernel: str | None = None,
    resume: str | None = None,
    replay: str | None = None,
    deterministic: bool | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run a pipeline (or resume a failed run, or replay a run) and return its run record.

    The whole pipeline is validated first (:func:`validate_pipeline`). The run
    directory holds a lock with the runner's pid while it runs; a run ends as
    ``ok``, ``failed`` or ``interrupted`` (Ctrl-C, SIGTERM, SIGHUP) whatever
    happens, and every attempt (the first and each resume) is kept in
    ``attempts``.

    Parameters
    ----------
    pipeline_file
        The YAML file; may be omitted with ``resume`` (the run record names it).
    runs_dir
        Where run folders go (default ``<project_dir>/runs``).
    project_dir
        Working directory of the notebooks (default the ``project_dir`` setting).
    parameters
        Overrides, given to every stage whose notebook declares them; they win
        over the pipeline's shared and per-stage parameters. A name that no
        stage declares is an error.
    kernel
        Jupyter kernel (default the pipeline's ``kernel``, ``workbench``).
    resume
        Id of a failed or interrupted run to continue from its failed stage.
    replay
        Id of a run to re-execute from its ``run.json`` into a new run: the same pipeline file, overrides
        (``parameters`` are added on top), kernel, project directory (``project_dir`` gives a fresh one: a
        replay in the run's own project starts from the state the run left, e.g. its feature-store commits)
        and determinism. The run is looked up in ``runs_dir`` (default ``<project_dir setting>/runs``), and the
        replay's record goes there too. Package versions, the
        pipeline file and the workbench commit are compared with the run's, each difference with a
        :class:`workbench.runs.ReplayWarning`; the new record names the run in ``replay``.
    deterministic
        Run the notebook kernels with TensorFlow op determinism and a fixed hash seed
        (:data:`DETERMINISM_ENV`), so that seeded stages replay to the same outputs on the same machine.
        Default: off, or the replayed run's setting.
    progress
        Show progress bars (stages, and cells within a stage).

    Returns
    -------
    dict
        The run record also written to ``runs/<run-id>/run.json``; its
        ``status`` is ``ok`` or ``failed``.
    """
    from workbench.config import load_settings

    settings = load_settings()
    if resume and replay:
        raise PipelineError("give either resume=RUN_ID or replay=RUN_ID, not both")
    plan: dict[str, Any] | None = None
    if replay:
        from workbench.runs import find_run, load_record, replay_plan

        runs_root = Path(runs_dir) if runs_dir else Path(settings.project_dir).resolve() / "runs"
        source_dir = find_run(replay, runs_dir=runs_root)
        runs_dir = runs_root  # the replay's record goes beside the run's, also when it runs in another project
        plan = replay_plan(load_record(source_dir), run_dir=source_dir)
        if pipeline_file is not None and Path(pipeline_file).resolve() != plan["pipeline_file"].resolve():
            raise PipelineError(f"run {replay} ran {plan['pipeline_file']}, not {pipeline_file}; leave the file out")
        pipeline_file = plan["pipeline_file"]
        parameters = {**plan["overrides"], **(parameters or {})}
        kernel = kernel or plan["kernel"]
        project_dir = project_dir or plan["project_dir"]
        deterministic = plan["deterministic"] if deterministic is None else deterministic
    cwd = Path(project_dir or settings.project_dir).resolve()
    runs_root = Path(runs_dir) if runs_dir else cwd / "runs"
    if resume:
        run_dir = runs_root / resume
        record = read_run(run_dir)
        if record.get("status") == "ok":
            raise PipelineError(f"run {resume} finished ok; nothing to resume")
        pipeline = load_pipeline(pipeline_file or record["pipeline_file"])
        overrides = dict(record.get("overrides") or {})
        overrides.update(parameters or {})
        kernel = kernel or record.get("kernel") or pipeline.kernel
        declared = validate_pipeline(pipeline, overrides=overrides, kernel=kernel)
        names = [s.name for s in pipeline.stages]
        if [s["name"] for s in record["stages"]] != names:
            raise PipelineError(f"pipeline {pipeline.path} no longer has the stages of run {record['run_id']}")
        lock = _RunLock(run_dir)
        lock.acquire()
        record["resumed"] = [*record.get("resumed", []), _now()]
        record["overrides"] = overrides
        record["parameters"] = {**pipeline.parameters, **overrides}
        record.setdefault("attempts", [])
        deterministic = bool(record.get("deterministic", False)) if deterministic is None else deterministic
        record["deterministic"] = deterministic
    else:
        if pipeline_file is None:
            raise PipelineError("give a pipeline file, or resume=RUN_ID, or replay=RUN_ID")
        pipeline = load_pipeline(pipeline_file)
        overrides = dict(parameters or {})
        kernel = kernel or pipeline.kernel
        declared = validate_pipeline(pipeline, overrides=overrides, kernel=kernel)
        run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        run_dir = runs_root / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        lock = _RunLock(run_dir)
        lock.acquire()
        record = {
            "run_id": run_id,
            "pipeline": pipeline.name,
            "pipeline_file": str(pipeline.path),
            "pipeline_sha256": checksum(pipeline.path),
            "project_dir": str(cwd),
            "overrides": overrides,
            "parameters": {**pipeline.parameters, **overrides},
            "package_versions": _package_versions(),
            "git_commit": _git_commit(pipeline.path.parent),
            "workbench": _workbench_build(),
            "settings": settings.public(),
            "started": _now(),
            "ended": None,
            "status": "running",
            "attempts": [],
            "deterministic": bool(deterministic),
            "stages": [
                {"name": s.name, "notebook": str(s.notebook), "status": "pending"} for s in pipeline.stages
            ],
        }
        if plan is not None:
            record["replay"] = plan["replay"]
    record["attempts"].append(_attempt_summary(record, overrides))
    record["status"] = "running"
    record["ended"] = None
    record["kernel"] = kernel
    try:
        with _signals_raise():
            _write_record(run_dir, record)
            _run_stages(pipeline, record, run_dir=run_dir, cwd=cwd, overrides=overrides, declared=declared,
                        kernel=kernel, progress=progress, deterministic=bool(record.get("deterministic")))
    except (KeyboardInterrupt, _Terminated) as exc:
        _end_run(record, run_dir, "interrupted", {"ename": type(exc).__name__, "evalue": str(exc) or "interrupted"})
        raise KeyboardInterrupt(str(exc)) from None
    except BaseException as exc:
        _end_run(record, run_dir, "failed", {"ename": type(exc).__name__, "evalue": str(exc)})
        raise
    finally:
        lock.release()
    return record


def _end_run(record: dict[str, Any], run_dir: Path, status: str, error: dict[str, Any]) -> None:
    """Mark the running stage and the run as ``status`` (when the run is not already ended)."""
    if record["status"] != "running":
        return
    for entry in record["stages"]:
        if entry["status"] == "running":
            entry.update(status=status, ended=_now(), error=error)
            record["failed_stage"] = entry["name"]
    record.update(status=status, ended=_now())
    record.setdefault("error", error)
    _close_attempt(record, status)
    _write_record(run_dir, record)


def _stage_used(run_dir: Path, stage: str) -> dict[str, Any]:
    used = run_dir / "used" / f"{stage}.json"
    return json.loads(used.read_text()) if used.exists() else {}


def _run_stages(
    pipeline: Pipeline,
    record: dict[str, Any],
    *,
    run_dir: Path,
    cwd: Path,
    overrides: Mapping[str, Any],
    declared: Mapping[str, set[str]],
    kernel: str,
    progress: bool,
    deterministic: bool = False,
) -> None:
    import papermill
    from tqdm.auto import tqdm

    from workbench._quiet import ipc_kernel_manager

    attempt = len(record["attempts"])
    outputs: dict[str, dict[str, str]] = {}
    saved_env = {k: os.environ.get(k) for k in (RUN_DIR_ENV, STAGE_ENV, PROJECT_ENV, *DETERMINISM_ENV)}
    os.environ[PROJECT_ENV] = str(cwd)  # the kernels' settings: the project is the notebooks' directory
    if deterministic:
        os.environ.update(DETERMINISM_ENV)  # the kernels inherit this process's environment
    bar = tqdm(total=len(pipeline.stages), desc=f"{pipeline.name}", unit="stage", disable=not progress)
    try:
        for index, (stage, entry) in enumerate(zip(pipeline.stages, record["stages"]), start=1):
            outputs_file = run_dir / "outputs" / f"{stage.name}.json"
            if entry["status"] == "ok":
                outputs[stage.name] = json.loads(outputs_file.read_text()) if outputs_file.exists() else {}
                bar.update(1)
                continue
            bar.set_postfix_str(stage.name)
            out_nb = run_dir / f"{index:02d}_{stage.name}.ipynb"
            params = {k: v for k, v in pipeline.parameters.items() if k in declared[stage.name]}
            params.update(stage.parameters)
            params.update({k: v for k, v in overrides.items() if k in declared[stage.name]})
            params = _resolve_references(params, outputs, stage.name)
            (run_dir / "used" / f"{stage.name}.json").unlink(missing_ok=True)
            entry.update(
                {"status": "running", "started": _now(), "ended": None, "error": None, "attempt": attempt,
                 "output_notebook": str(out_nb), "parameters": params, "inputs": _path_inputs(params, cwd)}
            )
            _write_record(run_dir, record)
            os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
            os.environ[STAGE_ENV] = stage.name
            error: dict[str, Any] | None = None
            try:
                papermill.execute_notebook(
                    str(stage.notebook), str(out_nb), parameters=params, kernel_name=kernel,
                    cwd=str(cwd), progress_bar=progress, log_output=False,
                    kernel_manager_class=ipc_kernel_manager(),
                )
            except papermill.PapermillExecutionError as exc:
                error = {"cell": exc.exec_count, "ename": exc.ename, "evalue": exc.evalue}
                log.error("stage %s failed in cell %s: %s: %s", stage.name, exc.exec_count, exc.ename, exc.evalue)
            except Exception as exc:  # noqa: BLE001 - kernel death, bad notebook JSON
                error = {"ename": type(exc).__name__, "evalue": str(exc)}
            entry["used"] = _stage_used(run_dir, stage.name)
            if error is not None:
                entry.update(status="failed", ended=_now(), error=error)
                record.update(status="failed", ended=_now(), failed_stage=stage.name)
                _close_attempt(record, "failed")
                _write_record(run_dir, record)
                return
            recorded = json.loads(outputs_file.read_text()) if outputs_file.exists() else {}
            outputs[stage.name] = recorded
            entry.update(
                status="ok", ended=_now(),
                outputs={k: {"path": v, "sha256": checksum(v, base=cwd)} for k, v in recorded.items()},
            )
            _write_record(run_dir, record)
            bar.update(1)
    finally:
        bar.close()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    record.update(status="ok", ended=_now())
    record.pop("failed_stage", None)
    record.pop("error", None)
    _close_attempt(record, "ok")
    _write_record(run_dir, record)


def stage_summary(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per stage (name, status, seconds, error) for tables."""
    rows = []
    for entry in record["stages"]:
        seconds = None
        if entry.get("started") and entry.get("ended"):
            seconds = (dt.datetime.fromisoformat(entry["ended"]) - dt.datetime.fromisoformat(entry["started"])).total_seconds()
        err = entry.get("error") or {}
        rows.append({"stage": entry["name"], "status": entry["status"], "seconds": seconds,
                     "error": f"{err.get('ename')}: {err.get('evalue')}" if err else ""})
    return rows

