"""Sea-ice training patches: rasterise an ice chart onto a cube, cut labelled patches, split them.

* :func:`label_raster` burns the chart's classes onto the cube's pixels (by the
  lat/lon of each pixel centre); land and unlabelled pixels get ``-1``.
* :func:`extract_patches` cuts ``size × size`` patches every ``stride`` pixels,
  keeps those whose majority class covers at least ``purity`` of the patch and
  that hold no NaN, and records class, scene and location.
* :func:`assign_splits` splits by spatial block (a patch is kept only when it
  lies wholly inside one block, so no pixel is shared by two splits) or by scene.
* :func:`class_balance` is the per-split class count table.
* :func:`to_training_dataset` inserts the patches into a feature group of the
  feature store (tensor feature ``patch``) and materialises a versioned
  training dataset whose splits are the spatial-block splits;
  :func:`from_training_dataset` reads it back as a :class:`PatchSet`.
* :func:`write_patches` / :func:`read_patches` store a :class:`PatchSet` as plain Zarr.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from workbench import storage
from workbench.errors import DataError

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import xarray as xr

__all__ = [
    "PatchSet",
    "label_raster",
    "extract_patches",
    "assign_splits",
    "class_balance",
    "to_binary",
    "write_patches",
    "read_patches",
    "to_training_dataset",
    "from_training_dataset",
    "BINARY_NAMES",
    "PATCH_SIZES",
]

BINARY_NAMES = ("water", "ice")
PATCH_SIZES = (16, 32, 64)
SPLITS = ("train", "val", "test")


@dataclass
class PatchSet:
    """Labelled patches and where they come from.

    Attributes
    ----------
    x
        ``float32`` array (n, size, size, bands).
    y
        Class index per patch.
    scene, row, col
        Scene id and top-left pixel (cube grid) of each patch.
    purity
        Fraction of the patch covered by its class.
    split
        ``train``/``val``/``test`` per patch (empty strings before :func:`assign_splits`).
    class_names, bands
        Names of the classes (index order) and of the channels.
    """

    x: np.ndarray
    y: np.ndarray
    scene: np.ndarray
    row: np.ndarray
    col: np.ndarray
    purity: np.ndarray
    split: np.ndarray
    class_names: tuple[str, ...]
    bands: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.size)

    @property
    def size(self) -> int:
        """Patch side in pixels."""
        return int(self.x.shape[1])

    def subset(self, mask: np.ndarray) -> "PatchSet":
        """The patches where ``mask`` is true."""
        mask = np.asarray(mask)
        return replace(
            self, x=self.x[mask], y=self.y[mask], scene=self.scene[mask], row=self.row[mask],
            col=self.col[mask], purity=self.purity[mask], split=self.split[mask],
        )

    def select(self, split: str) -> "PatchSet":
        """The patches of one split."""
        if split not in SPLITS:
            raise DataError(f"split {split!r} is not one of {SPLITS}")
        return self.subset(self.split == split)

    @staticmethod
    def concat(sets: Sequence["PatchSet"]) -> "PatchSet":
        """Join patch sets of the same classes, bands and size (e.g. several scenes)."""
        if not sets:
            raise DataError("no patch sets to join")
        first = sets[0]
        for other in sets[1:]:
            if other.class_names != first.class_names or other.bands != first.bands or other.size != first.size:
                raise DataError("patch sets differ in classes, bands or patch size")
        cat = lambda name: np.concatenate([getattr(s, name) for s in sets])  # noqa: E731
        return PatchSet(
            x=cat("x"), y=cat("y"), scene=cat("scene"), row=cat("row"), col=cat("col"), purity=cat("purity"),
            split=cat("split"), class_names=first.class_names, bands=first.bands, attrs=dict(first.attrs),
        )


def label_raster(
    cube: "xr.Dataset", chart: "gpd.GeoDataFrame", *, column: str = "class_id", land_column: str | None = "is_land"
) -> np.ndarray:
    """Class index of each cube pixel from an ice chart (``-1``: land or no polygon).

    Parameters
    ----------
    cube
        Preprocessed cube with ``latitude``/``longitude`` coordinates.
    chart
        Ice chart polygons in EPSG:4326 with an integer ``column``.
    column
        Class column.
    land_column
        Boolean column marking land polygons (burnt as ``-1``); ``None``: no land.
    """
    from workbench.sentinel1.landmask import rasterize_on_swath

    for name in ("latitude", "longitude"):
        if name not in cube.coords and name not in cube:
            raise DataError(f"cube has no {name!r}; build it with workbench.sentinel1.preprocess")
    if column not in chart.columns:
        raise DataError(f"ice chart has no column {column!r}; columns: {list(chart.columns)}")
    polys = chart
    if land_column is not None and land_column in chart.columns:
        polys = chart.assign(**{column: np.where(chart[land_column].to_numpy(bool), -1, chart[column])})
    return rasterize_on_swath(cube["latitude"].values, cube["longitude"].values, polys, column=column, fill=-1)


def _majority(windows: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority class (ignoring -1) and its share of all pixels, per window (n, s, s)."""
    flat = windows.reshape(windows.shape[0], -1).astype(np.int64)
    counts = np.zeros((flat.shape[0], n_classes), dtype=np.int64)
    for k in range(n_classes):
        counts[:, k] = (flat == k).sum(axis=1)
    cls = counts.argmax(axis=1)
    share = counts[np.arange(flat.shape[0]), cls] / flat.shape[1]
    return cls, share


def extract_patches(
    cube: "xr.Dataset",
    labels: np.ndarray,
    *,
    size: int = 32,
    stride: int | None = None,
    purity: float = 0.9,
    scene_id: str | None = None,
    class_names: Sequence[str] | None = None,
) -> PatchSet:
    """Cut labelled patches from a cube.

    Parameters
    ----------
    cube
        Cube with a ``sar`` (y, x, band) variable.
    labels
        Class raster (y, x) from :func:`label_raster`.
    size
        Patch side: 16, 32 or 64.
    stride
        Step between patches (default ``size // 2``).
    purity
        Minimum share of the patch's pixels of its majority class (0 < purity ≤ 1).
    scene_id
        Scene of the cube (default the cube's ``product`` attribute).
    class_names
        Names of the classes (default those of the sample chart).
    """
    from workbench.samples.sentinel1 import CLASS_NAMES

    names = tuple(class_names) if class_names is not None else CLASS_NAMES
    if size not in PATCH_SIZES:
        raise DataError(f"patch size must be one of {PATCH_SIZES}, got {size}")
    stride = size // 2 if stride is None else int(stride)
    if stride < 1:
        raise DataError(f"stride must be >= 1, got {stride}")
    if not 0.0 < purity <= 1.0:
        raise DataError(f"purity must be in (0, 1], got {purity}")
    if "sar" not in cube:
        raise DataError("cube has no 'sar' variable")
    data = np.asarray(cube["sar"].values, dtype=np.float32)
    labels = np.asarray(labels)
    if labels.shape != data.shape[:2]:
        raise DataError(f"labels have shape {labels.shape} but the cube is {data.shape[:2]}")
    if data.shape[0] < size or data.shape[1] < size:
        raise DataError(f"cube {data.shape[:2]} is smaller than one {size}×{size} patch")
    from numpy.lib.stride_tricks import sliding_window_view

    lab_win = sliding_window_view(labels, (size, size))[::stride, ::stride]
    dat_win = sliding_window_view(data, (size, size), axis=(0, 1))[::stride, ::stride]
    ny, nx = lab_win.shape[:2]
    rows = np.repeat(np.arange(ny) * stride, nx)
    cols = np.tile(np.arange(nx) * stride, ny)
    cls, share = _majority(lab_win.reshape(-1, size, size), len(names))
    finite = np.isfinite(dat_win.reshape(ny * nx, -1)).all(axis=1)
    keep = (share >= purity) & finite
    x = np.ascontiguousarray(dat_win.reshape(ny * nx, data.shape[2], size, size)[keep].transpose(0, 2, 3, 1))
    scene = scene_id or str(cube.attrs.get("product", "scene"))
    n = int(keep.sum())
    return PatchSet(
        x=x, y=cls[keep].astype(np.int16), scene=np.full(n, scene, dtype=object), row=rows[keep], col=cols[keep],
        purity=share[keep].astype(np.float32), split=np.full(n, "", dtype=object), class_names=names,
        bands=tuple(str(b) for b in cube["band"].values), attrs={"stride": stride, "min_purity": purity},
    )


def assign_splits(
    patches: PatchSet,
    *,
    by: str = "block",
    block: int = 64,
    fractions: Mapping[str, float] | None = None,
    scene_splits: Mapping[str, str] | None = None,
    gap: int = 0,
    seed: int = 0,
) -> PatchSet:
    """Assign ``train``/``val``/``test`` so that no pixel lies in two splits.

    Parameters
    ----------
    patches
        Patches from :func:`extract_patches`.
    by
        ``"block"``: square spatial blocks of ``block`` pixels per scene, each
        block wholly in one split; patches straddling a block edge are dropped.
        ``"scene"``: whole scenes per split, from ``scene_splits``.
    block
        Block side in pixels (≥ the patch size).
    fractions
        Share of blocks per split (default train 0.6, val 0.2, test 0.2).
    scene_splits
        Scene id → split, for ``by="scene"``.
    gap
        Also drop patches closer than ``gap`` pixels to a block edge, so that patches
        of different blocks are at least ``2·gap`` pixels apart (spatial autocorrelation).
    seed
        Seed of the block shuffle.

    Returns
    -------
    PatchSet
        The kept patches with their ``split``.
    """
    if by == "scene":
        if not scene_splits:
            raise DataError("by='scene' needs scene_splits (scene id -> train/val/test)")
        bad = {v for v in scene_splits.values()} - set(SPLITS)
        if bad:
            raise DataError(f"scene_splits holds unknown split(s) {sorted(bad)}; expected {SPLITS}")
        missing = sorted(set(patches.scene) - set(scene_splits))
        if missing:
            raise DataError(f"scene_splits does not assign scene(s) {missing}")
        out = replace(patches, split=np.array([scene_splits[s] for s in patches.scene], dtype=object))
        return out
    if by != "block":
        raise DataError(f"split 'by' must be 'block' or 'scene', got {by!r}")
    if block < patches.size:
        raise DataError(f"block ({block}) must be at least the patch size ({patches.size})")
    fractions = dict(fractions or {"train": 0.6, "val": 0.2, "test": 0.2})
    bad = set(fractions) - set(SPLITS)
    if bad or any(v < 0 for v in fractions.values()) or not np.isclose(sum(fractions.values()), 1.0):
        raise DataError(f"fractions {fractions} must map {SPLITS} to non-negative shares summing to 1")
    s = patches.size
    if gap < 0 or 2 * gap + s > block:
        raise DataError(f"gap must be in 0..{(block - s) // 2} for block {block} and patch size {s}, got {gap}")
    inside = np.ones(len(patches), dtype=bool)
    for start in (patches.row, patches.col):
        offset = start % block
        inside &= (offset >= gap) & (offset + s <= block - gap)
    kept = patches.subset(inside)
    keys = [f"{sc}/{r // block}/{c // block}" for sc, r, c in zip(kept.scene, kept.row, kept.col)]
    unique = sorted(set(keys))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    names = [k for k in SPLITS if fractions.get(k, 0) > 0]
    bounds = np.cumsum([fractions[k] for k in names]) * len(unique)
    block_split: dict[str, str] = {}
    for rank, idx in enumerate(order):
        pos = int(np.searchsorted(bounds, rank, side="right"))
        block_split[unique[idx]] = names[min(pos, len(names) - 1)]
    # every split with a share gets at least one block when there are enough blocks
    if len(unique) >= len(names):
        for k, name in enumerate(names):
            if name not in block_split.values():
                block_split[unique[order[k]]] = name
    kept.split = np.array([block_split[k] for k in keys], dtype=object)
    kept.attrs = {**kept.attrs, "split_by": "block", "block": block, "gap": gap, "seed": seed}
    return kept


def to_binary(y: np.ndarray) -> np.ndarray:
    """Five classes → binary: water (0) stays 0, every ice class becomes 1."""
    return (np.asarray(y) > 0).astype(np.int16)


def class_balance(patches: PatchSet, *, binary: bool = False) -> "pd.DataFrame":
    """Patches per class (rows) and split (columns), with totals."""
    import pandas as pd

    names = BINARY_NAMES if binary else patches.class_names
    y = to_binary(patches.y) if binary else patches.y
    frame = pd.crosstab(
        pd.Categorical([names[i] for i in y], categories=list(names)),
        pd.Categorical(patches.split, categories=[s for s in SPLITS] + [""]),
        dropna=False,
    )
    frame = frame.loc[:, (frame.sum(axis=0) > 0)]
    frame.index.name = "class"
    frame.columns = [str(c) or "unsplit" for c in frame.columns]
    frame["total"] = frame.sum(axis=1)
    return frame


def to_dataset(patches: PatchSet) -> "xr.Dataset":
    """The patches as an xarray Dataset (dimension ``patch``)."""
    import xarray as xr

    return xr.Dataset(
        {
            "x": (("patch", "py", "px", "band"), patches.x),
            "y": ("patch", patches.y.astype(np.int16)),
            "scene": ("patch", patches.scene.astype(str)),
            "row": ("patch", patches.row.astype(np.int32)),
            "col": ("patch", patches.col.astype(np.int32)),
            "purity": ("patch", patches.purity.astype(np.float32)),
            "split": ("patch", patches.split.astype(str)),
        },
        coords={"band": list(patches.bands)},
        attrs={"class_names": list(patches.class_names), **{k: v for k, v in patches.attrs.items()}},
    )


def from_dataset(ds: "xr.Dataset") -> PatchSet:
    """Inverse of :func:`to_dataset`."""
    for name in ("x", "y", "scene", "row", "col", "split"):
        if name not in ds:
            raise DataError(f"patch dataset has no {name!r} variable")
    attrs = dict(ds.attrs)
    names = tuple(attrs.pop("class_names", ()))
    return PatchSet(
        x=np.asarray(ds["x"].values, dtype=np.float32), y=ds["y"].values.astype(np.int16),
        scene=ds["scene"].values.astype(object), row=ds["row"].values, col=ds["col"].values,
        purity=ds["purity"].values if "purity" in ds else np.ones(ds.sizes["patch"], np.float32),
        split=ds["split"].values.astype(object), class_names=names,
        bands=tuple(str(b) for b in ds["band"].values), attrs=attrs,
    )


def write_patches(
    patches: PatchSet, url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write patches to Zarr atomically; returns ``url``."""
    if len(patches) == 0:
        raise DataError(f"no patches to write to {url}")
    ds = to_dataset(patches).chunk({"patch": 4096})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
        return storage.write_zarr(ds, url, storage_options=storage_options)


def read_patches(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> PatchSet:
    """Read patches written by :func:`write_patches`."""
    return from_dataset(storage.open_zarr(url, storage_options=storage_options).load())


def _frame(patches: PatchSet) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame(
        {
            "patch_id": [f"{sc}/{r}/{c}/{patches.size}" for sc, r, c in zip(patches.scene, patches.row, patches.col)],
            "scene": patches.scene.astype(str),
            "row": patches.row.astype("int32"),
            "col": patches.col.astype("int32"),
            "purity": patches.purity.astype("float32"),
            "split": patches.split.astype(str),
            "ice": to_binary(patches.y).astype("int16"),
            "class_id": patches.y.astype("int16"),
        }
    )


def to_training_dataset(
    patches: PatchSet,
    *,
    store: Any = None,
    name: str = "seaice_patches",
    version: int = 1,
    description: str = "Sentinel-1 sea-ice patches (HH_db, HV_db, incidence)",
) -> Any:
    """Insert patches into a feature group and create a training dataset split by their blocks.

    Parameters
    ----------
    patches
        Patches with splits (:func:`assign_splits`).
    store
        A :class:`workbench.featurestore.FeatureStore` (default: the project's).
    name, version
        Feature group and feature view name and version.
    description
        Description of the feature group.

    Returns
    -------
    workbench.featurestore.TrainingDataset
        The new training dataset version (splits ``train``/``val``/``test``;
        labels ``class_id``; tensor feature ``patch``).
    """
    from workbench.featurestore import FeatureStore

    if len(patches) == 0:
        raise DataError("no patches to insert")
    if set(patches.split) - set(SPLITS):
        raise DataError("patches have no split; call assign_splits first")
    store = store if store is not None else FeatureStore()
    shape = tuple(int(v) for v in patches.x.shape[1:])
    group = store.get_or_create_feature_group(
        name, version, primary_key=["patch_id"], description=description,
        tensor_features={"patch": {"shape": shape, "dtype": "float32"}},
    )
    group.insert(_frame(patches), tensors={"patch": patches.x.astype(np.float32)}, mode="upsert")
    view = store.get_or_create_feature_view(name, version, query=group.select_all(), labels=["class_id"])
    present = [s for s in SPLITS if (patches.split == s).any()]
    meta = {"class_names": list(patches.class_names), "bands": list(patches.bands), **patches.attrs}
    return view.create_training_dataset(
        split={s: [s] for s in present}, split_by="split", description=json.dumps(meta, default=str),
    )


def from_training_dataset(dataset: Any) -> PatchSet:
    """Read every split of a training dataset made by :func:`to_training_dataset` as one PatchSet."""
    meta = getattr(dataset, "metadata", {}) or {}
    try:
        info = json.loads(meta.get("description", "") or "{}")
    except json.JSONDecodeError:
        info = {}
    sets = []
    for split in dataset.splits:
        frame = dataset.read(split)
        if "patch" not in frame.columns or "class_id" not in frame.columns:
            raise DataError(f"training dataset v{dataset.version} has no 'patch'/'class_id' columns")
        n = len(frame)
        x = np.stack(frame["patch"].to_list()).astype(np.float32) if n else np.zeros((0, 1, 1, 1), np.float32)
        sets.append(
            PatchSet(
                x=x, y=frame["class_id"].to_numpy(np.int16), scene=frame["scene"].to_numpy(object),
                row=frame["row"].to_numpy(), col=frame["col"].to_numpy(), purity=frame["purity"].to_numpy(np.float32),
                split=np.full(n, split, dtype=object), class_names=tuple(info.get("class_names", ())),
                bands=tuple(info.get("bands", ())),
                attrs={k: v for k, v in info.items() if k not in ("class_names", "bands")}
                | {"training_dataset_version": dataset.version},
            )
        )
    sets = [s for s in sets if len(s)]
    if not sets:
        raise DataError(f"training dataset v{dataset.version} holds no patches")
    return PatchSet.concat(sets)
