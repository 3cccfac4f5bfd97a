"""Materialised training datasets: Parquet for tabular columns, Zarr for tensors, streamed to tf.data."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from workbench import storage
from workbench.featurestore import _tensors
from workbench.featurestore._common import FeatureStoreError

if TYPE_CHECKING:
    import tensorflow as tf

    from workbench.featurestore.feature_group import FeatureGroup
    from workbench.featurestore.store import FeatureStore

__all__ = ["TrainingDataset", "write_split", "TABULAR_BLOCK_ROWS"]

log = logging.getLogger(__name__)
TABULAR_BLOCK_ROWS = 8192


def write_split(
    frame: pd.DataFrame,
    prefix: str,
    *,
    tensors: Mapping[str, tuple["FeatureGroup", str]],
    storage_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Write one split: ``<prefix>.parquet`` and ``<prefix>.<tensor>.zarr``, in blocks of equal rows.

    Parquet row group ``i`` and Zarr chunk ``i`` hold the same rows, so a
    reader can fetch any block of rows with two reads.
    """
    block = TABULAR_BLOCK_ROWS
    for group, feature in tensors.values():
        spec = group.tensor_features[feature]
        block = min(block, _tensors.rows_per_chunk(spec["shape"], spec["dtype"]))
    n = len(frame)
    refs = [c for name in tensors for c in (_tensors.store_column(name), _tensors.row_column(name))]
    tabular = frame.drop(columns=refs)
    table = pa.Table.from_pandas(tabular, preserve_index=False).replace_schema_metadata(None)
    fs, path = storage.filesystem(f"{prefix}.parquet", storage_options)
    if not storage.is_remote(prefix):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with fs.open(path, "wb") as fh, pq.ParquetWriter(fh, table.schema) as writer:
        for lo in range(0, n, block):
            writer.write_table(table.slice(lo, block), row_group_size=block)
    out: dict[str, Any] = {
        "rows": n,
        "block_rows": block,
        "parquet": f"{prefix.rsplit('/', 1)[-1]}.parquet",
        "tensors": {},
    }
    for name, (group, feature) in tensors.items():
        spec = group.tensor_features[feature]
        url = f"{prefix}.{name}.zarr"
        # stored uncompressed: read at every epoch, where decompression would cost training time
        target = _tensors.create_tensor(
            url,
            rows=n,
            shape=spec["shape"],
            dtype=spec["dtype"],
            storage_options=storage_options,
            compress=False,
            chunk_rows=block,
        )
        if n:
            stores = frame[_tensors.store_column(name)].astype(str).to_numpy()
            rows = frame[_tensors.row_column(name)].to_numpy()
            arrays = {s: group._open_tensor(feature, s) for s in np.unique(stores)}
            for lo in tqdm(
                range(0, n, block),
                desc=f"{prefix.rsplit('/', 1)[-1]}:{name}",
                leave=False,
                disable=n <= 20 * block,
            ):
                hi = min(n, lo + block)
                target[lo:hi] = _tensors.gather_rows(
                    arrays, stores[lo:hi], rows[lo:hi], shape=spec["shape"], dtype=spec["dtype"]
                )
        out["tensors"][name] = url.rsplit("/", 1)[-1]
    return out


def _slice(x: Any, lo: int, hi: int) -> Any:
    return {k: v[lo:hi] for k, v in x.items()} if isinstance(x, dict) else x[lo:hi]


def _concat(a: Any, b: Any) -> Any:
    return {k: np.concatenate([a[k], b[k]]) for k in a} if isinstance(a, dict) else np.concatenate([a, b])


class TrainingDataset:
    """A materialised, versioned training dataset of a feature view."""

    def __init__(self, store: "FeatureStore", td_dir: str, meta: Mapping[str, Any]) -> None:
        self._store = store
        self._dir = td_dir
        self.metadata: dict[str, Any] = dict(meta)

    @property
    def version(self) -> int:
        """Version of the training dataset within its feature view."""
        return int(self.metadata["version"])

    @property
    def splits(self) -> dict[str, int]:
        """Rows of each split."""
        return {k: int(v["rows"]) for k, v in self.metadata["splits"].items()}

    @property
    def provenance(self) -> dict[str, Any]:
        """Feature-group versions, query and split rule this dataset was made from."""
        keys = ("feature_view", "feature_groups", "query", "sql", "split", "split_kind", "split_by", "seed")
        return {k: self.metadata[k] for k in keys}

    def __repr__(self) -> str:
        view = self.metadata["feature_view"]
        return f"TrainingDataset(view={view['name']!r} v{view['version']}, version={self.version}, splits={self.splits})"

    def _split(self, split: str) -> dict[str, Any]:
        if split not in self.metadata["splits"]:
            raise FeatureStoreError(
                f"training dataset v{self.version} has no split {split!r}; it has {sorted(self.metadata['splits'])}"
            )
        return self.metadata["splits"][split]

    def _url(self, name: str) -> str:
        return storage.join(self._dir, self.metadata["data_dir"], name)

    def _parquet(self, split: str) -> pq.ParquetFile:
        fs, path = storage.filesystem(self._url(self._split(split)["parquet"]), self._store.storage_options)
        return pq.ParquetFile(fs.open(path, "rb"))

    def _zarrs(self, split: str) -> dict[str, Any]:
        return {
            name: _tensors.open_tensor(self._url(zname), storage_options=self._store.storage_options)
            for name, zname in self._split(split)["tensors"].items()
        }

    def read(self, split: str = "train") -> pd.DataFrame:
        """The whole split as a DataFrame (tensor features as columns of arrays); for small datasets."""
        info = self._split(split)
        frame = self._parquet(split).read().to_pandas()
        for name, z in self._zarrs(split).items():
            frame[name] = pd.Series(list(z[:]) if info["rows"] else [], index=frame.index, dtype=object)
        return frame

    # ------------------------------------------------------------------ arrays
    def _layout(self, as_dict: bool) -> tuple[list[str], list[str], list[str]]:
        x_tab = list(self.metadata["x_features"])
        tensors = list(self.metadata["tensor_features"])
        labels = list(self.metadata["labels"])
        if not x_tab and not tensors:
            raise FeatureStoreError(f"training dataset v{self.version} has no numeric or tensor features")
        if x_tab and tensors and not as_dict:
            raise FeatureStoreError(
                "this training dataset has tensor and tabular features: use as_dict=True "
                f"(inputs {tensors} and 'features')"
            )
        if len(tensors) > 1 and not as_dict:
            raise FeatureStoreError(
                f"this training dataset has several tensor features {tensors}: use as_dict=True"
            )
        return x_tab, tensors, labels

    def _block(
        self, split: str, pf: pq.ParquetFile, zarrs: Mapping[str, Any], index: int, *, as_dict: bool
    ) -> tuple[Any, Any]:
        x_tab, tensors, labels = self._layout(as_dict)
        info = self._split(split)
        lo = index * info["block_rows"]
        hi = min(info["rows"], lo + info["block_rows"])
        group = pf.read_row_group(index, columns=x_tab + labels)
        matrix = (
            np.column_stack([group.column(c).to_numpy(zero_copy_only=False) for c in x_tab]).astype("float32")
            if x_tab
            else None
        )
        y = self._labels(group, labels)
        blocks = {t: zarrs[t][lo:hi] for t in tensors}
        return self._pack(matrix, blocks, as_dict), y

    def _labels(self, group: pa.Table, labels: list[str]) -> np.ndarray:
        if not labels:
            raise FeatureStoreError("the feature view has no labels; give labels= when creating it")
        cols = [group.column(c).to_numpy(zero_copy_only=False) for c in labels]
        for c, values in zip(labels, cols):
            if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
                raise FeatureStoreError(f"label {c!r} is not numeric ({values.dtype}); encode it as integers")
        if len(cols) == 1:
            values = cols[0]
            return (
                values.astype("int64")
                if (np.issubdtype(values.dtype, np.integer) or values.dtype == bool)
                else values.astype("float32")
            )
        return np.column_stack(cols).astype("float32")

    @staticmethod
    def _pack(matrix: np.ndarray | None, blocks: Mapping[str, np.ndarray], as_dict: bool) -> Any:
        if as_dict:
            out = dict(blocks)
            if matrix is not None:
                out["features"] = matrix
            return out
        if blocks:
            return next(iter(blocks.values()))
        return matrix

    def arrays(self, split: str = "train", *, as_dict: bool = False) -> tuple[Any, np.ndarray]:
        """The whole split as in-memory ``(x, y)`` arrays (the same layout as :meth:`to_tf_dataset`)."""
        info = self._split(split)
        pf, zarrs = self._parquet(split), self._zarrs(split)
        nblocks = pf.num_row_groups
        parts = [self._block(split, pf, zarrs, i, as_dict=as_dict) for i in range(nblocks)]
        if not parts:
            raise FeatureStoreError(f"split {split!r} of training dataset v{self.version} is empty")
        ys = np.concatenate([p[1] for p in parts])
        xs0 = parts[0][0]
        if isinstance(xs0, dict):
            x: Any = {k: np.concatenate([p[0][k] for p in parts]) for k in xs0}
        else:
            x = np.concatenate([p[0] for p in parts])
        if len(ys) != info["rows"]:
            raise FeatureStoreError(
                f"split {split!r} of training dataset v{self.version} holds {len(ys)} rows, its metadata says "
                f"{info['rows']}: the stored files are damaged"
            )
        return x, ys

    # ------------------------------------------------------------------ tf.data
    def _native_ok(self, split: str, zarrs: Mapping[str, Any]) -> bool:
        """Whether the split's tensors can be read by TensorFlow file ops (local, raw, chunk = block)."""
        if storage.is_remote(self._dir) or not zarrs:
            return False
        info = self._split(split)
        for z in zarrs.values():
            if tuple(z.compressors) or tuple(z.filters) or z.dtype.byteorder == ">":
                return False
            if any(c != s for c, s in zip(z.chunks[1:], z.shape[1:])):
                return False
            if z.chunks[0] != info["block_rows"] and z.shape[0] > z.chunks[0]:
                return False
        return True

    def _native_blocks(
        self,
        split: str,
        pf: pq.ParquetFile,
        zarrs: Mapping[str, Any],
        *,
        shuffle: bool,
        seed: int | None,
        as_dict: bool,
    ) -> "tf.data.Dataset":
        """Blocks of ``(x, y)`` as a tf.data pipeline of ``read_file``/``decode_raw`` on the Zarr chunk files.

        Labels and tabular features of the split (a few numbers per row) are held in memory; the
        tensors are read chunk by chunk (Zarr v3 chunk keys ``c/<i>/0/...``; raw little-endian bytes).
        """
        import tensorflow as tf

        x_tab, tensors, labels = self._layout(as_dict)
        info = self._split(split)
        n, block = int(info["rows"]), int(info["block_rows"])
        nblocks = pf.num_row_groups
        table = pf.read(columns=x_tab + labels)
        y_all = tf.constant(self._labels(table, labels))
        tab_all = (
            tf.constant(
                np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in x_tab]).astype(
                    "float32"
                )
            )
            if x_tab
            else None
        )
        sources = {}
        for t in tensors:
            z = zarrs[t]
            root = self._url(self._split(split)["tensors"][t]).removeprefix("file://")
            zeros = ["0"] * (len(z.shape) - 1)
            paths = [str(Path(root, "c", str(i), *zeros)) for i in range(nblocks)]
            sources[t] = (
                tf.constant(paths),
                tf.as_dtype(z.dtype),
                [int(z.chunks[0]), *map(int, z.shape[1:])],
            )

        def load(i: Any) -> tuple[Any, Any]:
            lo = i * block
            rows = tf.range(lo, tf.minimum(lo + block, n))
            if shuffle:
                rows = tf.random.shuffle(rows, seed=seed)
            local = rows - lo
            x: dict[str, Any] = {}
            for t, (paths, dtype, shape) in sources.items():
                chunk = tf.reshape(tf.io.decode_raw(tf.io.read_file(paths[i]), dtype), shape)
                x[t] = tf.gather(chunk, local)
            if tab_all is not None:
                x["features"] = tf.gather(tab_all, rows)
            y = tf.gather(y_all, rows)
            if as_dict:
                return x, y
            return next(iter(x.values())), y

        ds = tf.data.Dataset.range(nblocks)
        if shuffle:
            ds = ds.shuffle(nblocks, seed=seed, reshuffle_each_iteration=True)
        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def to_tf_dataset(
        self,
        split: str = "train",
        *,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        shuffle_buffer: int = 0,
        as_dict: bool = False,
        repeat: bool = False,
    ) -> "tf.data.Dataset":
        """A ``tf.data.Dataset`` of ``(x, y)`` batches streamed block by block from storage."""
        import tensorflow as tf

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FeatureStoreError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, int) or shuffle_buffer < 0:
            raise FeatureStoreError(f"shuffle_buffer must be an integer >= 0, got {shuffle_buffer!r}")
        info = self._split(split)
        x_tab, tensors, labels = self._layout(as_dict)
        pf, zarrs = self._parquet(split), self._zarrs(split)
        nblocks = pf.num_row_groups
        probe_x, probe_y = self._block(split, pf, zarrs, 0, as_dict=as_dict) if nblocks else (None, None)
        if probe_x is None:
            raise FeatureStoreError(f"split {split!r} of training dataset v{self.version} is empty")

        def spec(a: np.ndarray) -> Any:
            return tf.TensorSpec(shape=(None, *a.shape[1:]), dtype=tf.as_dtype(a.dtype))

        x_spec = {k: spec(v) for k, v in probe_x.items()} if isinstance(probe_x, dict) else spec(probe_x)
        signature = (x_spec, spec(probe_y))
        epochs = itertools.count()

        def blocks() -> Iterator[tuple[Any, np.ndarray]]:
            epoch = next(epochs)
            rng = np.random.default_rng(None if seed is None else [seed, epoch])
            order = rng.permutation(nblocks) if shuffle else np.arange(nblocks)
            for i in order:
                x, y = self._block(split, pf, zarrs, int(i), as_dict=as_dict)
                if shuffle:
                    perm = rng.permutation(len(y))
                    x = {k: v[perm] for k, v in x.items()} if isinstance(x, dict) else x[perm]
                    y = y[perm]
                yield x, y

        def batches() -> Iterator[tuple[Any, np.ndarray]]:
            # cut the blocks into batches here (numpy slices), carrying the rest of a block over to the
            # next one, rather than unbatching into single rows in tf.data: far less work per sample
            carry: tuple[Any, np.ndarray] | None = None
            for x, y in blocks():
                if carry is not None:
                    x = _concat(carry[0], x)
                    y = np.concatenate([carry[1], y])
                full = len(y) - len(y) % batch_size
                for lo in range(0, full, batch_size):
                    yield _slice(x, lo, lo + batch_size), y[lo : lo + batch_size]
                carry = (_slice(x, full, len(y)), y[full:]) if full < len(y) else None
            if carry is not None:
                yield carry

        if self._native_ok(split, zarrs):
            # local raw Zarr chunks: read and decoded by TensorFlow's own file ops, in parallel, no Python
            ds = self._native_blocks(split, pf, zarrs, shuffle=shuffle, seed=seed, as_dict=as_dict)
            ds = ds.unbatch()
            if shuffle_buffer:
                ds = ds.shuffle(shuffle_buffer, seed=seed)
            ds = ds.batch(batch_size)
        elif shuffle_buffer:
            ds = tf.data.Dataset.from_generator(blocks, output_signature=signature)
            ds = ds.unbatch().shuffle(shuffle_buffer, seed=seed).batch(batch_size)
        else:
            ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
        # the number of batches is known: telling tf.data lets Keras plan whole epochs
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-int(info["rows"]) // batch_size)))
        if repeat:
            ds = ds.repeat()
        log.debug("streaming split %s: %d rows in %d blocks", split, info["rows"], nblocks)
        return ds.prefetch(tf.data.AUTOTUNE)
