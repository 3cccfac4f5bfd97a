"""Data-parallel training of one Keras model over several Dask workers (synchronous, gradients all-reduced).

:func:`fit_distributed` picks ``n_workers`` Dask workers (those with a ``GPU`` resource when the cluster
has any), gives each a free port, and runs on each one rank: a fresh TensorFlow process under
``MultiWorkerMirroredStrategy`` whose ``TF_CONFIG`` lists all the ranks. Every rank reads its own
contiguous shard of the feature store's training dataset from storage (nothing goes through the
scheduler but the run's description), builds the same model from the same seed, and trains with a
custom ``strategy.run`` step; the Keras optimizer sums the gradients over the ranks. The schedule is the
weighted two-phase one of :func:`workbench.training.fit.two_phase_fit` (class-weighted epochs, then
unweighted epochs with the same optimizer state; RMSprop by default). Rank 0 writes the model through
:mod:`workbench.storage` (atomically) and registers it in the model registry.

A rank that fails (bad data, its process killed, its worker gone) fails the run: the other ranks' collectives
abort within seconds (closed sockets) or after ``collective_timeout``, every rank's process is stopped,
and the error names the rank and the worker.

Model builders take a :class:`ShardInfo` (input shape, number of classes, a sample of the training rows
for input statistics) and return an uncompiled ``keras.Model``; :class:`CropBuilder` and
:class:`SeaIceBuilder` wrap the workbench's crop and sea-ice models.

Examples
--------
>>> td = to_training_dataset(samples)                                     # doctest: +SKIP
>>> result = fit_distributed(CropBuilder("lstm", {"n_layers": 2, "units": 64}), td,
...                          client="tcp://scheduler:8786", n_workers=2, register_as="crop_lstm")  # doctest: +SKIP
>>> result.validation.overall_accuracy, result.samples_per_second          # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench._args import checked_keywords
from workbench.errors import ClusterError, DataError
from workbench.training._distributed_data import DatasetRef
from workbench.training._distributed_loop import RunSpec, ShardInfo

if TYPE_CHECKING:
    from distributed import Client

    from workbench.training.metrics import ClassificationReport

__all__ = [
    "OPTIMIZERS",
    "CropBuilder",
    "DatasetRef",
    "DistributedResult",
    "DistributedTrainingError",
    "SeaIceBuilder",
    "ShardInfo",
    "fit_distributed",
]

log = logging.getLogger(__name__)
OPTIMIZERS = ("rmsprop", "adam")
#: Substrings of a rank's error that mean "a peer went away" rather than "this rank's own fault".
_PEER_SIGNS = (
    "aborted",
    "socket closed",
    "unavailable",
    "cancelled",
    "connection reset",
    "deadline",
    "failed to connect",
    "was stopped",
    "recvbuf",
    "heartbeat",
)


class DistributedTrainingError(ClusterError):
    """A distributed training run failed: a rank's process died, its worker left, or the run timed out."""


@dataclass(frozen=True)
class CropBuilder:
    """Builds a crop model (:func:`workbench.models.crops.build_model`) with the percentile scaling of the sample.

    Parameters
    ----------
    kind
        Any kind :func:`~workbench.models.crops.build_model` knows (``lstm``, ``tempcnn``, ``starrnn``...).
    params
        The builder's keyword arguments (``n_layers``, ``units``...).
    scaling
        Input scaling fitted on the sample: ``"percentile"`` (2nd/98th, the default) or ``"standard"``
        (:func:`workbench.models.crops.fit_scaling`).
    """

    kind: str = "lstm"
    params: Mapping[str, Any] = field(default_factory=dict)
    scaling: str = "percentile"

    def __call__(self, info: ShardInfo) -> Any:
        from workbench.models.crops import build_model, fit_scaling

        if len(info.input_shape) != 2:
            raise DataError(
                f"crop models take (months, bands) series, the dataset's samples have shape "
                f"{info.input_shape}"
            )
        scaling = fit_scaling(info.sample_x, method=self.scaling)
        return build_model(
            self.kind,
            info.input_shape[0],
            info.input_shape[1],
            info.n_classes,
            scaling=scaling,
            **dict(self.params),
        )


@dataclass(frozen=True)
class SeaIceBuilder:
    """Builds a sea-ice CNN (:func:`workbench.models.seaice.build_model`) standardised by the sample's statistics.

    Parameters
    ----------
    kind
        ``adhoc`` or ``vgg16``.
    augment
        Add :class:`~workbench.models.seaice.SeaIceAugment` (flips, rotations, speckle; training only).
    params
        The builder's keyword arguments (``width``, ``pools``, ``dropout``...).
    seed
        Seed of the augmentation.
    """

    kind: str = "adhoc"
    augment: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __call__(self, info: ShardInfo) -> Any:
        from workbench.models.seaice import SeaIceAugment, build_model
        from workbench.training.seaice import channel_stats

        if len(info.input_shape) != 3:
            raise DataError(
                f"sea-ice CNNs take (size, size, channels) patches, the dataset's samples have shape "
                f"{info.input_shape}"
            )
        mean, std = channel_stats(info.sample_x, bands=info.bands)
        augment = None
        if self.augment:
            db = [i for i, b in enumerate(info.bands) if b.endswith("_db")] or [0, 1][: info.input_shape[-1]]
            augment = SeaIceAugment(db_channels=db, seed=self.seed)
        return build_model(
            self.kind,
            info.input_shape,
            info.n_classes,
            mean=mean,
            std=std,
            augment=augment,
            **dict(self.params),
        )


@dataclass
class DistributedResult:
    """Outcome of :func:`fit_distributed`.

    Attributes
    ----------
    model_url
        Where rank 0 wrote the model (``.keras``).
    registered
        ``(name, version)`` in the model registry, or None.
    n_workers, workers
        Number of ranks and the Dask worker of each.
    history
        Per-epoch ``phase``, ``loss``, ``accuracy``, ``val_accuracy`` (validation split, all shards), seconds.
    validation
        Report of the final model on the whole validation split (None without one).
    class_weight
        Phase-1 class weights (from the whole training split).
    samples_per_second, steady_samples_per_second
        Training throughput over all epochs, and over the epochs after the first (no tracing).
    step_seconds
        Seconds of one synchronous step (steady epochs).
    allreduce_seconds_per_step
        Seconds of one all-reduce of the gradients alone (timed after the training).
    shard_rows
        Training rows of each rank's shard.
    global_batch_size, steps_per_epoch
        Samples per synchronous step (all ranks) and steps of an epoch.
    seconds
        Wall time of the whole run as the caller saw it.
    ranks
        Every rank's own figures.
    """

    model_url: str
    registered: tuple[str, int] | None
    n_workers: int
    workers: list[str]
    history: list[dict[str, Any]]
    validation: ClassificationReport | None
    class_weight: dict[int, float]
    samples_per_second: float
    steady_samples_per_second: float
    step_seconds: float
    allreduce_seconds_per_step: float
    shard_rows: list[int]
    global_batch_size: int
    steps_per_epoch: int
    seconds: float
    ranks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def val_accuracy(self) -> float | None:
        """Validation overall accuracy of the final model (None without a validation split)."""
        return None if self.validation is None else self.validation.overall_accuracy

    def load_model(self, *, storage_options: Mapping[str, Any] | None = None) -> Any:
        """Load the trained model from :attr:`model_url`."""
        import keras

        import workbench.models.crops
        import workbench.models.seaice  # noqa: F401 - registers SeaIceAugment
        from workbench import storage

        with storage.local_copy(self.model_url, storage_options=storage_options) as local:
            return keras.saving.load_model(local)


def _settings(project: Any) -> Any:
    from workbench.config import Settings, load_settings

    if project is None:
        return load_settings()
    if isinstance(project, Settings):
        return project
    return load_settings(project_dir=Path(project))


def _client(client: Any) -> Client:
    from distributed import Client

    from workbench.cluster import get_client

    if isinstance(client, Client):
        return client
    if client is None or isinstance(client, str):
        return get_client(client or None)
    raise DataError(f"client must be a dask Client, a scheduler address or None, got {type(client).__name__}")


def _pick_workers(client: Client, n_workers: int) -> tuple[list[str], dict[str, float] | None]:
    from workbench.cluster import GPU_RESOURCE, gpu_workers, task_resources

    workers = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
    resources = task_resources(client)
    pool = gpu_workers(client) if resources else workers
    if len(pool) < n_workers:
        kind = f"workers with a {GPU_RESOURCE} resource" if resources else "workers"
        raise ClusterError(
            f"n_workers={n_workers} ranks need as many Dask workers, but the cluster has "
            f"{len(pool)} {kind} ({len(workers)} in all); start more workers or ask for fewer"
        )
    return pool[:n_workers], resources


def _check(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _settle(futures: list[Any], seconds: float, *, any_done: bool = False) -> None:
    """Wait up to ``seconds`` for every future to leave ``pending`` (for one more to, with ``any_done``)."""
    deadline = time.monotonic() + seconds
    pending = sum(f.status == "pending" for f in futures)
    while time.monotonic() < deadline:
        now = sum(f.status == "pending" for f in futures)
        if now == 0 or (any_done and now < pending):
            return
        time.sleep(0.1)


def _gone(client: Client, workers: list[str]) -> list[tuple[int, str]]:
    """``(rank, worker)`` of the ranks whose worker is no longer in the cluster."""
    alive = set(client.scheduler_info(n_workers=-1).get("workers", {}))
    return [(r, w) for r, w in enumerate(workers) if w not in alive]


def _wind_down(
    client: Client, futures: list[Any], workers: list[str], seconds: float
) -> list[tuple[int, str]]:
    """After the abort: wait up to ``seconds`` for the ranks whose workers live to end; the ranks gone."""
    deadline = time.monotonic() + seconds
    while True:
        gone = _gone(client, workers)
        lost = {r for r, _ in gone}
        if time.monotonic() > deadline or all(
            f.status != "pending" or r in lost for r, f in enumerate(futures)
        ):
            return gone
        time.sleep(0.2)


def _root_cause(failures: list[tuple[int, BaseException]]) -> tuple[int, BaseException]:
    own = [
        (r, e)
        for r, e in failures
        if not any(s in str(e).split("; last output:")[0].lower() for s in _PEER_SIGNS)
    ]
    return (own or failures)[0]


@checked_keywords
def fit_distributed(
    build_fn: Callable[[ShardInfo], Any],
    dataset_ref: Any,
    *,
    client: Any = None,
    n_workers: int = 2,
    n_classes: int | None = None,
    class_names: Sequence[str] = (),
    weighted_epochs: int = 5,
    unweighted_epochs: int = 5,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    weight_decay: float | None = None,
    optimizer: str = "rmsprop",
    class_weight: str | Mapping[int, float] | None = "balanced",
    max_class_weight: float | None = 50.0,
    seed: int = 0,
    deterministic: bool = False,
    model_url: str | None = None,
    register_as: str | None = None,
    params: Mapping[str, Any] | None = None,
    aliases: Sequence[str] = (),
    project: Any = None,
    collective_timeout: float = 120.0,
    timeout: float | None = None,
    run_id: str | None = None,
) -> DistributedResult:
    """Train one Keras model synchronously on ``n_workers`` Dask workers, one TensorFlow process each.

    Parameters
    ----------
    build_fn
        ``build_fn(info: ShardInfo) -> keras.Model`` (uncompiled, softmax over ``info.n_classes``); called on
        every rank under the strategy's scope after seeding, so every rank builds the same weights. Must
        pickle (cloudpickle): a :class:`CropBuilder`, a :class:`SeaIceBuilder`, or a function.
    dataset_ref
        A feature-store ``TrainingDataset`` or a :class:`DatasetRef` (label map, splits, input feature).
    client
        A dask ``Client``, a scheduler address, or None (:func:`workbench.cluster.get_client`).
    n_workers
        Ranks, one per Dask worker (workers with a ``GPU`` resource when the cluster has any).
    n_classes
        Number of classes (default: largest label + 1, or from the label map).
    class_names
        Names of the classes (for the validation report).
    weighted_epochs, unweighted_epochs
        Epochs of phase 1 (class-weighted loss) and phase 2 (unweighted); either may be 0, not both.
    batch_size
        Global batch (all ranks together); a multiple of ``n_workers``. Each rank steps on
        ``batch_size // n_workers`` rows of its shard; epochs have ``min(shard rows) // local batch`` steps.
    learning_rate, weight_decay, optimizer
        ``"rmsprop"`` (the paper's) or ``"adam"`` (the sea-ice trainer's) with these settings.
    class_weight, max_class_weight
        Phase-1 weights: ``"balanced"`` (inverse class frequency of the whole training split, capped at
        ``max_class_weight``; as :func:`workbench.training.fit.class_weights`), a ``{class: weight}``
        mapping, or None (no weights).
    seed, deterministic
        :func:`workbench.training.fit.seed_everything` on every rank (weights, dropout, shuffling).
    model_url
        Where rank 0 writes the model (``.keras``; local or ``s3://``); default
        ``<storage_root>/models/distributed/<name>-<run_id>.keras``.
    register_as
        Register the model under this name (metrics: validation accuracy, median F1, kappa).
    params, aliases
        Extra parameters to record, and registry aliases of the new version.
    project
        Project directory or Settings (storage root, registry).
    collective_timeout
        Seconds a collective may wait for a peer before the run fails (a hung peer; a dead one is seen at once).
    timeout
        Seconds the whole run may take (None: no limit).
    run_id
        Name of the run (default: random); the rank processes carry it in their command line.

    Returns
    -------
    DistributedResult

    Raises
    ------
    DataError
        Bad arguments, or data the ranks cannot train on (named by the rank that found it).
    DistributedTrainingError
        A rank's process died or its worker left the cluster, or ``timeout`` passed.
    ClusterError
        Fewer Dask workers than ``n_workers``.
    """
    from distributed import Event
    from distributed.protocol import pickle as dask_pickle

    from workbench import storage
    from workbench.training import _distributed_task as task

    if not callable(build_fn):
        raise DataError(f"build_fn must be callable as build_fn(info) -> keras.Model, got {build_fn!r}")
    n_workers = _check("n_workers", n_workers, low=1)
    batch_size = _check("batch_size", batch_size, low=1)
    weighted_epochs = _check("weighted_epochs", weighted_epochs, low=0)
    unweighted_epochs = _check("unweighted_epochs", unweighted_epochs, low=0)
    if weighted_epochs + unweighted_epochs == 0:
        raise DataError("weighted_epochs and unweighted_epochs are both 0: nothing to train")
    if batch_size % n_workers:
        raise DataError(f"batch_size {batch_size} is not a multiple of n_workers={n_workers}")
    if optimizer not in OPTIMIZERS:
        raise DataError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if not learning_rate > 0:
        raise DataError(f"learning_rate must be > 0, got {learning_rate}")
    if weight_decay is not None and weight_decay < 0:
        raise DataError(f"weight_decay must be >= 0, got {weight_decay}")
    if not (class_weight is None or class_weight == "balanced" or isinstance(class_weight, Mapping)):
        raise DataError(
            f"class_weight must be 'balanced', a {{class: weight}} mapping or None, got {class_weight!r}"
        )
    if n_classes is not None:
        n_classes = _check("n_classes", n_classes, low=2)
    if not collective_timeout > 0:
        raise DataError(f"collective_timeout must be > 0 seconds, got {collective_timeout}")
    if timeout is not None and not timeout > 0:
        raise DataError(f"timeout must be > 0 seconds or None, got {timeout}")
    ref = DatasetRef.of(dataset_ref)
    dataset = ref.open()
    ref = ref.resolve(dataset)
    rows = dataset.splits[ref.train_split]
    if rows < batch_size:
        raise DataError(f"batch_size {batch_size} is larger than the training split ({rows} rows)")
    settings = _settings(project)
    run_id = run_id or uuid.uuid4().hex[:12]
    if model_url is None:
        model_url = storage.join(
            settings.storage_root, "models", "distributed", f"{register_as or 'model'}-{run_id}.keras"
        )
    if not str(model_url).endswith(".keras"):
        raise DataError(f"model_url {model_url!r} must end with .keras")
    spec = RunSpec(
        build_fn=build_fn,
        dataset=ref,
        run_id=run_id,
        n_classes=n_classes,
        class_names=tuple(class_names),
        weighted_epochs=weighted_epochs,
        unweighted_epochs=unweighted_epochs,
        batch_size=batch_size,
        learning_rate=float(learning_rate),
        weight_decay=weight_decay,
        optimizer=optimizer,
        class_weight=dict(class_weight) if isinstance(class_weight, Mapping) else class_weight,
        max_class_weight=max_class_weight,
        seed=int(seed),
        deterministic=bool(deterministic),
        collective_timeout=float(collective_timeout),
        model_url=str(model_url),
        register_as=register_as,
        params=dict(params or {}),
        aliases=tuple(aliases),
        project=str(settings.project_dir),
        storage_options=settings.storage_options() if storage.is_remote(str(model_url)) else None,
    )
    try:
        payload = dask_pickle.dumps(spec)  # cloudpickle where plain pickle cannot (functions of __main__...)
    except Exception as exc:
        raise DataError(
            f"build_fn cannot be pickled to send it to the workers: {type(exc).__name__}: {exc}"
        ) from exc

    dask = _client(client)
    workers, resources = _pick_workers(dask, n_workers)
    started = time.perf_counter()
    port_tasks = [
        dask.submit(
            task.reserve_port, workers=[w], allow_other_workers=False, pure=False, key=f"wb-port-{run_id}-{r}"
        )
        for r, w in enumerate(workers)
    ]
    try:
        ports = [f.result(timeout=60) for f in port_tasks]
    except TimeoutError as exc:
        raise DistributedTrainingError(
            f"the workers {workers} did not answer within 60 s (busy or gone)"
        ) from exc
    finally:
        dask.cancel(port_tasks)
    cluster = [f"{host}:{port}" for host, port in ports]
    abort = Event(f"wb-dist-abort-{run_id}", client=dask)
    futures = []
    for rank, worker in enumerate(workers):
        tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": rank}}
        futures.append(
            dask.submit(
                task.run_rank,
                payload,
                rank=rank,
                n_workers=n_workers,
                tf_config=json.dumps(tf_config),
                run_id=run_id,
                abort=abort.name,
                workers=[worker],
                allow_other_workers=False,
                resources=resources,
                pure=False,
                retries=0,
                key=f"wb-train-{run_id}-rank{rank}",
            )
        )
    log.info("distributed training %s: %d ranks on %s", run_id, n_workers, workers)
    failure: BaseException | None = None
    deadline = None if timeout is None else time.monotonic() + timeout
    succeeded = False
    try:
        while True:
            _settle(futures, 1.0, any_done=True)
            if any(f.status in ("error", "cancelled") for f in futures) or all(
                f.status == "finished" for f in futures
            ):
                break
            if _gone(dask, workers):
                break
            if deadline is not None and time.monotonic() > deadline:
                failure = DistributedTrainingError(
                    f"training run {run_id} did not finish within {timeout:g} s"
                )
                break
        if failure is None and all(f.status == "finished" for f in futures):
            results = dask.gather(futures)
            succeeded = True
        else:
            abort.set()
            gone = _wind_down(dask, futures, workers, 30.0)
            failures = [(r, f.exception()) for r, f in enumerate(futures) if f.status == "error"]
            if failure is None:
                if gone:
                    others = "; ".join(f"rank {r}: {e}" for r, e in failures)
                    failure = DistributedTrainingError(
                        f"worker {gone[0][1]} (rank {gone[0][0]}) left the Dask cluster during training run "
                        f"{run_id}" + (f" (then {others})" if others else "")
                    )
                elif not failures:
                    failure = DistributedTrainingError(f"training run {run_id} was cancelled")
                else:
                    rank, exc = _root_cause(failures)
                    others = "; ".join(f"rank {r}: {e}" for r, e in failures if r != rank)
                    if isinstance(exc, DataError):
                        failure = exc
                    else:
                        failure = DistributedTrainingError(
                            f"training run {run_id} failed: {exc}" + (f" (then {others})" if others else "")
                        )
            raise failure
    finally:
        if not succeeded:  # also on an interrupt of the caller: no rank process outlives the run
            abort.set()
        dask.cancel(futures)
    return _result(results, workers, spec, time.perf_counter() - started)


def _result(
    results: list[dict[str, Any]], workers: list[str], spec: RunSpec, seconds: float
) -> DistributedResult:
    from workbench.training.metrics import ClassificationReport

    chief = results[0]
    cm = np.asarray(chief["validation_confusion"], dtype=np.int64)
    validation = None
    if cm.size and cm.sum():
        names = spec.class_names if len(spec.class_names) == cm.shape[0] else ()
        validation = ClassificationReport(confusion=cm, class_names=tuple(names))
    registered = chief.get("registered")
    return DistributedResult(
        model_url=chief["model_url"],
        registered=(registered["name"], int(registered["version"])) if registered else None,
        n_workers=len(results),
        workers=list(workers),
        history=chief["history"],
        validation=validation,
        class_weight={int(k): float(v) for k, v in chief["class_weight"].items()},
        samples_per_second=float(chief["samples_per_second"]),
        steady_samples_per_second=float(chief["steady_samples_per_second"]),
        step_seconds=float(chief["step_seconds"]),
        allreduce_seconds_per_step=float(chief["allreduce_seconds_per_step"]),
        shard_rows=[int(v) for v in chief["shard_rows"]],
        global_batch_size=spec.batch_size,
        steps_per_epoch=int(chief["steps_per_epoch"]),
        seconds=seconds,
        ranks=results,
    )
