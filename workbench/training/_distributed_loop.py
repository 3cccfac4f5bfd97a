"""The training loop of one rank of a data-parallel run (runs inside the rank's own TensorFlow process).

TensorFlow's ``MultiWorkerMirroredStrategy`` (its cluster from ``TF_CONFIG``) mirrors the model's variables
on every rank; a custom ``strategy.run`` step computes the gradients of the rank's local batch with
``tf.GradientTape`` and the Keras optimizer sums them over the ranks (collective all-reduce) before
applying them, so every rank holds the same weights after every step. Keras 3's ``model.fit`` is not
used: it fails under this strategy (keras-team/keras#20585).

The schedule is :func:`workbench.training.fit.two_phase_fit`'s: class-weighted epochs (inverse class
frequencies of the whole training split, counted by all-reduce), then unweighted epochs with the same
optimizer state. The loss of a step is ``Σ w_i · l_i / global_batch`` over the rank's samples, so the
summed gradient is the gradient of the global batch's mean loss, as in a one-process run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import DataError
from workbench.training._distributed_data import DatasetRef, read_head, read_shard

__all__ = ["PROBE_STEPS", "STATS_ROWS", "RunSpec", "ShardInfo", "train"]

log = logging.getLogger(__name__)

#: Rows of the training split's head every rank reads to fit input statistics (the same rows on every rank).
STATS_ROWS = 16384
#: All-reduce-only steps timed after the training (gradient-sized tensors).
PROBE_STEPS = 10


@dataclass(frozen=True)
class ShardInfo:
    """What a model builder is given on every rank (the same on all ranks).

    Attributes
    ----------
    input_shape
        Shape of one input sample (no batch axis).
    n_classes
        Number of classes (outputs of the softmax).
    sample_x
        The first rows of the training split (at most :data:`STATS_ROWS`; stored order is random), for
        input statistics such as per-band scaling; the same rows on every rank, so every rank builds
        the same model.
    description
        The dataset's stored description (e.g. ``bands``, ``class_names``).
    rank, n_workers
        This rank and the number of ranks.
    """

    input_shape: tuple[int, ...]
    n_classes: int
    sample_x: np.ndarray
    description: Mapping[str, Any] = field(default_factory=dict)
    rank: int = 0
    n_workers: int = 1

    @property
    def bands(self) -> tuple[str, ...]:
        """Band names from the dataset description (empty when it has none)."""
        return tuple(str(b) for b in self.description.get("bands", ()))


@dataclass(frozen=True)
class RunSpec:
    """Everything a rank needs, sent pickled to its process."""

    build_fn: Callable[[ShardInfo], Any]
    dataset: DatasetRef
    run_id: str
    n_classes: int | None = None
    class_names: tuple[str, ...] = ()
    weighted_epochs: int = 5
    unweighted_epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float | None = None
    optimizer: str = "rmsprop"
    class_weight: Any = "balanced"
    max_class_weight: float | None = 50.0
    seed: int = 0
    deterministic: bool = False
    collective_timeout: float = 120.0
    model_url: str = ""
    register_as: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    project: str | None = None
    storage_options: Mapping[str, Any] | None = None


def _strategy(spec: RunSpec, rank: int) -> Any:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if (
        len(gpus) > 1
    ):  # one replica per rank (its batch is not split over devices); ranks of one host spread out
        tf.config.set_visible_devices(gpus[rank % len(gpus)], "GPU")
    comm = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=comm.NCCL if gpus else comm.RING, timeout_seconds=float(spec.collective_timeout)
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _optimizer(spec: RunSpec) -> Any:
    import keras

    if spec.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(
            learning_rate=spec.learning_rate, weight_decay=spec.weight_decay or None
        )
    return keras.optimizers.Adam(learning_rate=spec.learning_rate, weight_decay=spec.weight_decay or None)


def _weight_table(spec: RunSpec, counts: np.ndarray, n_classes: int) -> np.ndarray:
    from workbench.training.fit import class_weights

    if spec.class_weight is None:
        return np.ones(n_classes, np.float32)
    if isinstance(spec.class_weight, Mapping):
        table = np.ones(n_classes, np.float32)
        for k, v in spec.class_weight.items():
            if not 0 <= int(k) < n_classes:
                raise DataError(f"class_weight names class {k}, but there are {n_classes} classes")
            table[int(k)] = float(v)
        return table
    labels = np.repeat(np.arange(n_classes), counts.astype(np.int64))
    weights = class_weights(labels, n_classes, max_weight=spec.max_class_weight)
    return np.array([weights[i] for i in range(n_classes)], np.float32)


def train(
    spec: RunSpec, *, rank: int, n_workers: int, emit: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Train on this rank's shard in step with the other ranks; rank 0 saves and registers the model.

    ``emit`` gets one progress record per epoch (on rank 0). Returns this rank's figures (rank 0's include
    the history, the validation confusion matrix, the model URL and the registered version).
    """
    import tensorflow as tf

    from workbench.training.fit import seed_everything

    started = time.perf_counter()
    seed_everything(spec.seed, deterministic=spec.deterministic)
    strategy = _strategy(spec, rank)
    if strategy.num_replicas_in_sync != n_workers:
        raise DataError(
            f"the TensorFlow cluster has {strategy.num_replicas_in_sync} replicas for {n_workers} ranks"
        )
    ref = spec.dataset
    dataset = ref.open()
    x_train, y_train = read_shard(dataset, ref, ref.train_split, rank=rank, n_shards=n_workers)
    if ref.validation_split:
        x_val, y_val = read_shard(dataset, ref, ref.validation_split, rank=rank, n_shards=n_workers)
    else:
        x_val, y_val = x_train[:0], y_train[:0]
    sample = read_head(dataset, ref, ref.train_split, rows=STATS_ROWS)
    if not np.isfinite(x_train).all():
        raise DataError(
            f"the training shard of rank {rank} holds NaN/inf inputs; fill or drop them before training"
        )
    loaded = time.perf_counter()

    @tf.function
    def _sum(values: Any) -> Any:
        per = strategy.run(lambda v: tf.identity(v), args=(values,))
        return strategy.reduce("SUM", per, axis=None)

    def allreduce(values: np.ndarray) -> np.ndarray:
        return np.asarray(_sum(tf.constant(np.asarray(values, np.float64))))

    def gather(values: list[float]) -> np.ndarray:
        slots = np.zeros((n_workers, len(values)))
        slots[rank] = values
        return allreduce(slots)

    shards = gather([len(y_train), len(y_val), float(y_train.max()) if len(y_train) else -1.0])
    n_classes = spec.n_classes or (max(ref.label_map) + 1 if ref.label_map else int(shards[:, 2].max()) + 1)
    if len(y_train) and (y_train.min() < 0 or y_train.max() >= n_classes):
        raise DataError(
            f"labels must be in 0..{n_classes - 1}; rank {rank}'s shard has "
            f"{int(y_train.min())}..{int(y_train.max())}"
        )
    counts = allreduce(np.bincount(y_train, minlength=n_classes)[:n_classes])
    table = _weight_table(spec, counts, n_classes)
    local_batch = spec.batch_size // n_workers
    steps = int(shards[:, 0].min()) // local_batch
    if steps < 1:
        raise DataError(
            f"batch_size {spec.batch_size} is larger than the training rows of a worker's shard "
            f"({int(shards[:, 0].min())} rows x {n_workers} workers); use a smaller batch_size"
        )

    seed_everything(spec.seed, deterministic=spec.deterministic)  # the same initial weights on every rank
    info = ShardInfo(
        input_shape=tuple(int(v) for v in x_train.shape[1:]),
        n_classes=n_classes,
        sample_x=sample,
        description=ref.description(dataset),
        rank=rank,
        n_workers=n_workers,
    )
    with strategy.scope():
        model = spec.build_fn(info)
        _check_model(model, info)
        optimizer = _optimizer(spec)
        optimizer.build(model.trainable_variables)

    import keras

    x_spec = tf.TensorSpec((local_batch, *info.input_shape), tf.float32)

    @tf.function(
        input_signature=[x_spec, tf.TensorSpec((local_batch,), tf.int32), tf.TensorSpec((n_classes,))]
    )
    def train_step(x: Any, y: Any, weights: Any) -> Any:
        def replica(x: Any, y: Any, weights: Any) -> Any:
            w = tf.gather(weights, y)
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                per = keras.losses.sparse_categorical_crossentropy(y, probs)
                loss = tf.nn.compute_average_loss(per * w, global_batch_size=spec.batch_size)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))  # sums the grads over the ranks
            hits = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), y), tf.float32)
            return tf.stack([tf.reduce_sum(per * w), tf.reduce_sum(hits)])

        return strategy.experimental_local_results(strategy.run(replica, args=(x, y, weights)))[0]

    @tf.function(reduce_retracing=True)
    def predict(x: Any) -> Any:
        return tf.argmax(model(x, training=False), -1, output_type=tf.int32)

    def confusion() -> np.ndarray:
        pred = (
            np.concatenate(
                [np.asarray(predict(tf.constant(x_val[i : i + 1024]))) for i in range(0, len(y_val), 1024)]
            )
            if len(y_val)
            else np.zeros(0, np.int64)
        )
        return np.bincount(y_val.astype(np.int64) * n_classes + pred, minlength=n_classes**2).astype(
            np.float64
        )

    history: list[dict[str, Any]] = []
    train_seconds: list[float] = []
    rng_seed = [int(spec.seed), rank]
    ones = np.ones(n_classes, np.float32)
    epoch = 0
    for phase, epochs, weights in ((1, spec.weighted_epochs, table), (2, spec.unweighted_epochs, ones)):
        w_tensor = tf.constant(weights)
        for _ in range(epochs):
            t0 = time.perf_counter()
            order = np.random.default_rng([*rng_seed, epoch]).permutation(len(y_train))[: steps * local_batch]
            xs, ys = x_train[order], y_train[order]
            outs = [
                train_step(
                    tf.constant(xs[s * local_batch : (s + 1) * local_batch]),
                    tf.constant(ys[s * local_batch : (s + 1) * local_batch]),
                    w_tensor,
                )
                for s in range(steps)
            ]
            local = np.sum([np.asarray(o) for o in outs], axis=0)
            t1 = time.perf_counter()
            totals = allreduce(np.concatenate([local, confusion()]))
            n_seen = steps * spec.batch_size
            record: dict[str, Any] = {
                "phase": phase,
                "epoch": epoch + 1,
                "loss": float(totals[0] / n_seen),
                "accuracy": float(totals[1] / n_seen),
                "seconds": time.perf_counter() - t0,
                "train_seconds": t1 - t0,
            }
            cm = totals[2:].reshape(n_classes, n_classes)
            if cm.sum():
                record["val_accuracy"] = float(np.trace(cm) / cm.sum())
            history.append(record)
            train_seconds.append(t1 - t0)
            if rank == 0:
                emit(record)
            epoch += 1
    probe = _probe_allreduce(strategy, model)
    trained = time.perf_counter()
    samples = steps * spec.batch_size
    steady = train_seconds[1:] or train_seconds
    result: dict[str, Any] = {
        "rank": rank,
        "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
        "train_rows": len(y_train),
        "validation_rows": len(y_val),
        "shard_rows": [int(v) for v in shards[:, 0]],
        "steps_per_epoch": steps,
        "local_batch_size": local_batch,
        "n_classes": n_classes,
        "class_weight": {i: float(v) for i, v in enumerate(table)},
        "load_seconds": loaded - started,
        "train_seconds": float(sum(train_seconds)),
        "samples_per_second": samples * len(train_seconds) / sum(train_seconds) if train_seconds else 0.0,
        "steady_samples_per_second": samples * len(steady) / sum(steady) if steady else 0.0,
        "step_seconds": sum(steady) / (len(steady) * steps) if steady else 0.0,
        "allreduce_seconds_per_step": probe,
        "gradient_bytes": int(sum(np.prod(v.shape) * 4 for v in model.trainable_variables)),
        "history": history,
        "validation_confusion": cm.astype(np.int64).tolist() if history else [],
        "input_shape": list(info.input_shape),
    }
    if rank == 0:
        result.update(_publish(spec, model, dataset, result))
    result["seconds"] = time.perf_counter() - started
    result["loop_seconds"] = trained - loaded
    return result


def _check_model(model: Any, info: ShardInfo) -> None:
    import keras

    if not isinstance(model, keras.Model):
        raise DataError(f"build_fn must return a keras.Model, got {type(model).__name__}")
    shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if (
        shape is None
        or len(shape) != len(info.input_shape)
        or any(a is not None and a != b for a, b in zip(shape, info.input_shape))
    ):
        raise DataError(
            f"the model takes inputs of shape {model.input_shape}, the dataset's samples have shape "
            f"{info.input_shape}"
        )
    outputs = int(model.output_shape[-1])
    if outputs != info.n_classes:
        raise DataError(
            f"the model has {outputs} outputs for {info.n_classes} classes; build it with "
            "info.n_classes outputs or pass n_classes="
        )


def _probe_allreduce(strategy: Any, model: Any) -> float:
    """Seconds of one all-reduce of the model's gradient-sized tensors (the sum every step makes)."""
    import tensorflow as tf

    shapes = [(v.shape, v.dtype) for v in model.trainable_variables]

    @tf.function
    def probe() -> Any:
        def replica() -> Any:
            grads = [tf.zeros(shape, dtype) for shape, dtype in shapes]
            return tf.distribute.get_replica_context().all_reduce("SUM", grads)

        return strategy.run(replica)

    for _ in range(2):
        tf.nest.map_structure(np.asarray, strategy.experimental_local_results(probe()))
    t0 = time.perf_counter()
    for _ in range(PROBE_STEPS):
        out = probe()
    tf.nest.map_structure(np.asarray, strategy.experimental_local_results(out))
    return (time.perf_counter() - t0) / PROBE_STEPS


def _publish(spec: RunSpec, model: Any, dataset: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    """Rank 0: write the model to ``spec.model_url`` (atomically) and register it when asked."""
    import tempfile
    from pathlib import Path

    from workbench import storage
    from workbench.training.metrics import ClassificationReport

    out: dict[str, Any] = {"model_url": spec.model_url}
    with tempfile.TemporaryDirectory(prefix="wb-dist-") as tmp:
        local = Path(tmp) / "model.keras"
        model.save(local)
        storage.write_bytes(spec.model_url, local.read_bytes(), storage_options=spec.storage_options)
    if spec.register_as:
        from workbench import registry

        metrics: dict[str, float] = {"train_samples_per_s": float(result["samples_per_second"])}
        cm = np.asarray(result["validation_confusion"])
        if cm.size and cm.sum():
            names = spec.class_names if len(spec.class_names) == cm.shape[0] else ()
            report = ClassificationReport(confusion=cm, class_names=tuple(names))
            metrics.update(
                val_accuracy=report.overall_accuracy, val_median_f1=report.median_f1, val_kappa=report.kappa
            )
        metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
        params = {
            "n_workers": len(result["shard_rows"]),
            "batch_size": spec.batch_size,
            "weighted_epochs": spec.weighted_epochs,
            "unweighted_epochs": spec.unweighted_epochs,
            "optimizer": spec.optimizer,
            "learning_rate": spec.learning_rate,
            "seed": spec.seed,
            "run_id": spec.run_id,
            **dict(spec.params),
        }
        version = registry.save_model(
            spec.register_as,
            model,
            metrics=metrics,
            training_dataset=dataset,
            params=params,
            input_example=np.zeros((2, *result["input_shape"]), np.float32),
            aliases=spec.aliases,
            description=f"data-parallel training on {len(result['shard_rows'])} worker(s), run {spec.run_id}",
            project=spec.project,
        )
        out["registered"] = {"name": spec.register_as, "version": int(version.version)}
    return out
