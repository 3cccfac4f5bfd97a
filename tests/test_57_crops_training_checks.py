"""Crop training that replays and refuses bad input (issue 15: the STAR gate, seeding, n_classes, NaN, keywords)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from workbench.errors import ArgumentError, DataError  # noqa: E402


def _data(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 12, 4)).astype("float32") + y[:, None, None]
    return x, y


def test_star_gate_starts_by_keeping_the_state() -> None:
    import keras

    from workbench.models.crops import StarCell

    cell = StarCell(5)
    cell.build((None, 4))
    b_k = keras.ops.convert_to_numpy(cell.b_k)
    np.testing.assert_allclose(b_k, -1.0)
    share_replaced = 1 / (1 + np.exp(-b_k))  # k for zero input and zero state
    assert (share_replaced < 0.3).all()


def test_same_seed_same_weights_in_two_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = textwrap.dedent("""
        import os, sys, json, hashlib
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np
        import pandas as pd
        from workbench.models.crops import train_crop_models
        rng = np.random.default_rng(0)
        n = 120
        y = rng.integers(0, 3, n)
        frame = pd.DataFrame({f"B{b}_m{m:02d}": rng.normal(size=n) + y for b in range(2) for m in range(12)})
        frame["label"] = y
        frame["split"] = np.where(np.arange(n) < 90, "train", "validation")
        runs = train_crop_models(frame, n_classes=3, models=["starrnn"], params={"starrnn": {"n_layers": 1, "units": 4}},
                                 weighted_epochs=1, unweighted_epochs=1, seed=7)
        weights = b"".join(np.asarray(w).tobytes() for w in runs["starrnn"].model.get_weights())
        print(json.dumps(hashlib.sha256(weights).hexdigest()))
    """)
    path = tmp_path / "train.py"
    path.write_text(script)
    digests = []
    for _ in range(2):
        done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        assert done.returncode == 0, done.stderr[-2000:]
        digests.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert digests[0] == digests[1]


def test_n_classes_must_match_the_model() -> None:
    from workbench.models.crops import build_model
    from workbench.training.fit import two_phase_fit

    x, y = _data()
    model = build_model("tempcnn", 12, 4, 3)
    with pytest.raises(DataError, match="n_classes is 5 but the model has 3 outputs"):
        two_phase_fit(model, x, y, n_classes=5, weighted_epochs=1, unweighted_epochs=0)
    with pytest.raises(DataError, match=r"labels must be in 0..2"):
        two_phase_fit(model, x, y + 1, n_classes=3, weighted_epochs=1, unweighted_epochs=0)


def test_nan_inputs_are_refused_not_scored() -> None:
    from workbench.models.crops import build_model
    from workbench.training.fit import evaluate, two_phase_fit

    x, y = _data()
    model = build_model("tempcnn", 12, 4, 3)
    bad = x.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(DataError, match="1 NaN/inf value"):
        evaluate(model, bad, y, n_classes=3)
    with pytest.raises(DataError, match="NaN/inf"):
        two_phase_fit(model, bad, y, n_classes=3, weighted_epochs=1, unweighted_epochs=0)


def test_wrong_keyword_names_the_parameters() -> None:
    from workbench.models.crops import build_model, train_crop_models
    from workbench.training.fit import two_phase_fit

    x, y = _data()
    model = build_model("tempcnn", 12, 4, 3)
    with pytest.raises(ArgumentError, match=r"has no parameter 'epochs' \(did you mean 'weighted_epochs'"):
        two_phase_fit(model, x, y, n_classes=3, epochs=3)
    with pytest.raises(TypeError, match="it takes samples, n_classes"):  # still a TypeError for callers
        train_crop_models(None, n_classes=3, model=["lstm"])
    with pytest.raises(DataError, match="has no parameter 'model'"):  # and a DataError naming the argument
        train_crop_models(None, n_classes=3, model=["lstm"])
