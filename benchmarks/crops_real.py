"""Benchmark: the four deep crop models against classical baselines on the two real labelled series.

Runs the grouped evaluation protocol (:func:`workbench.training.protocol.evaluate_protocol`) on

* **Formosat-2** (``../shared/data/temporalcnn-formosat2``; 520 series of 149
  dates × 3 bands, 13 classes; groups = polygons: no polygon is in two splits);
* **Slovenia NDVI** (``../shared/data/eolearn-slovenia-ndvi``; 12 monthly
  NDVI composites per pixel, 4 land-cover classes; groups = 10 × 10 pixel
  blocks: a spatial hold-out),

for several seeds (one grouped split and one initialisation each): LSTM,
TempCNN, StarRNN and the Transformer encoder (early stopping on validation
groups carved from the training groups) and the named baselines, a random
forest and 5-NN (scikit-learn, in dask-ml's ``ParallelPostFit``), on the same
rows. Prints per data set the mean ± std table with the paper's and
BreizhCrops' figures beside it, the per-class F1, the comparison with the
paper's ordering, and, last, the worst deep model's mean OA over the best
classical baseline's (the minimum over both data sets; target ≥ 1).

Usage: ``python benchmarks/crops_real.py [--small] [--seeds N]`` (``--small``:
2 seeds, fewer epochs and Slovenia training rows capped lower; what ``make bench`` runs).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Per data set: builder arguments and training settings of the deep models (tuned on validation groups only).
SETTINGS = {
    "formosat2": {
        "params": {
            "lstm": {"n_layers": 2, "units": 64, "dropout": 0.2},
            "tempcnn": {},
            # without the batch norm between layers: on 276 series of 149 dates it held StarRNN at 14-30 % OA
            "starrnn": {"n_layers": 1, "units": 64, "dropout": 0.2, "batch_norm": False},
            "transformer": {"d_model": 32, "n_heads": 2, "n_layers": 2, "d_inner": 64, "dropout": 0.1},
        },
        "fit": {"*": {"unweighted_epochs": 80, "batch_size": 32, "patience": 15, "learning_rate": 1e-3},
                "lstm": {"learning_rate": 3e-3},
                "starrnn": {"learning_rate": 1e-2, "unweighted_epochs": 150, "patience": 30},
                "transformer": {"learning_rate": 1e-3}},
        "scaling": "standard",
        "max_train": None,
    },
    "slovenia_ndvi": {
        "params": {
            "lstm": {"n_layers": 2, "units": 64, "dropout": 0.2},
            "tempcnn": {},
            "starrnn": {"n_layers": 2, "units": 64, "dropout": 0.2},
            "transformer": {"d_model": 32, "n_heads": 2, "n_layers": 2, "d_inner": 64, "dropout": 0.1},
        },
        "fit": {"*": {"unweighted_epochs": 40, "batch_size": 64, "patience": 8, "learning_rate": 1e-3},
                "lstm": {"learning_rate": 3e-3}, "starrnn": {"learning_rate": 3e-3}},
        "scaling": "standard",
        "max_train": 3000,
    },
}


def _ordering(summary: "object", models: list[str]) -> str:
    means = {m: float(summary.loc[m, "OA % mean"]) for m in models}  # type: ignore[attr-defined]
    return " > ".join(f"{m} {means[m]:.1f}" for m in sorted(means, key=means.get, reverse=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="2 seeds, fewer epochs")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; --small: 2)")
    parser.add_argument("--data", default=str(SHARED), help="folder holding the two data sets")
    parser.add_argument("--only", choices=sorted(SETTINGS), default=None, help="run one data set")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

    import pandas as pd

    from workbench.datasets.labelled_series import read_formosat2, read_slovenia_ndvi
    from workbench.models.crops import BREIZHCROPS_RESULTS, MODEL_NAMES, PAPER_RESULTS
    from workbench.training.protocol import evaluate_protocol

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    folder = Path(args.data)
    readers = {"formosat2": (read_formosat2, folder / "temporalcnn-formosat2"),
               "slovenia_ndvi": (read_slovenia_ndvi, folder / "eolearn-slovenia-ndvi")}
    if not all(path.is_dir() for _, path in readers.values()):
        print(f"skipped: the real series are not under {folder}; nothing to measure")
        return
    n_seeds = args.seeds or (2 if args.small else 3)
    ratios = {}
    start = time.perf_counter()
    for name, (reader, path) in readers.items():
        if args.only and name != args.only:
            continue
        x, y, groups, classes = reader(path)
        settings = SETTINGS[name]
        fit = {k: dict(v) for k, v in settings["fit"].items()}
        if args.small:
            fit["*"]["unweighted_epochs"] = fit["*"]["unweighted_epochs"] // 2
        t0 = time.perf_counter()
        result = evaluate_protocol(
            x, y, groups=groups, n_classes=len(classes), class_names=classes, name=name,
            params=settings["params"], fit=fit, seeds=tuple(range(n_seeds)), scaling=settings["scaling"],
            max_train=settings["max_train"] if not args.small else (1500 if settings["max_train"] else None),
        )
        seconds = time.perf_counter() - t0
        summary = result.summary()
        splits = result.splits[0]
        print(f"\n== {name}: {len(x)} series of {x.shape[1]} steps x {x.shape[2]} band(s), {len(classes)} classes, "
              f"{len(set(groups.tolist()))} groups; per seed train/validation/test rows {splits['train']}/"
              f"{splits['validation']}/{splits['test']}; {n_seeds} seeds; {seconds:.0f} s")
        print(summary.drop(columns=["kind"]).to_string())
        print("per-class F1 % (mean over seeds):")
        print(result.per_class_f1().to_string())
        oa = result.mean_oa()
        deep = [m for m in MODEL_NAMES if m in oa]
        best_classical = max(("random_forest", "knn"), key=lambda m: oa[m])
        worst_deep = min(deep, key=lambda m: oa[m])
        ratios[name] = (oa[worst_deep] / oa[best_classical], worst_deep, best_classical)
        gaps = {m: 100 * (oa["tempcnn"] - oa[m]) for m in ("lstm", "starrnn")}
        print(f"ordering here:         {_ordering(summary, deep)}")
        print("ordering in the paper: " + " > ".join(f"{m} {PAPER_RESULTS[m]['overall_accuracy']:.1f}"
                                                      for m in sorted(PAPER_RESULTS, key=lambda m: -PAPER_RESULTS[m]["overall_accuracy"])))
        print("ordering in BreizhCrops: " + " > ".join(f"{m} {v:.0f}" for m, v in BREIZHCROPS_RESULTS.items()))
        print(f"TempCNN minus LSTM / StarRNN: {gaps['lstm']:.1f} / {gaps['starrnn']:.1f} points (target <= 5); "
              f"worst deep {worst_deep} {100 * oa[worst_deep]:.1f} vs best classical {best_classical} "
              f"{100 * oa[best_classical]:.1f}")
        paper_order = max(deep, key=lambda m: PAPER_RESULTS.get(m, {}).get("overall_accuracy", 0))
        best_here = max(deep, key=lambda m: oa[m])
        if best_here == paper_order:
            print(f"The paper's winner ({paper_order}) wins here too.")
        else:
            print(f"The paper's winner ({paper_order}) does not win here ({best_here} does): "
                  + ("149 dates of 3 bands and 20-40 series per class favour TempCNN's local temporal filters, "
                     "which need few samples, over recurrent models that must carry state across 149 steps."
                     if name == "formosat2" else
                     "12 monthly NDVI values of land-cover classes (forest, grassland, shrubland, artificial) "
                     "differ in level more than in timing, so every model, and the classical baselines, "
                     "separate them about equally; the paper's LSTM advantage came from 10-band crop phenology."))
    print(f"\nwhole benchmark: {time.perf_counter() - start:.0f} s")
    for name, (ratio, worst, best) in ratios.items():
        print(f"{name}: worst deep ({worst}) / best classical ({best}) mean OA = {ratio:.3f}")
    worst_name = min(ratios, key=lambda k: ratios[k][0])
    print(f"crops_real_worst_deep_vs_best_classical_oa ({worst_name}): {ratios[worst_name][0]:.3f}x")


if __name__ == "__main__":
    main()
