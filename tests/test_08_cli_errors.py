"""What a new user hits on the command line (issue 17, items 8, 9, 11): one-line errors, no silent success, a fast --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main

#: Modules that `workbench --help` must not import (each costs seconds).
HEAVY = ("tensorflow", "keras", "mlflow", "pyoxigraph", "deltalake", "dask.array", "fastapi", "torch", "optuna",
         "geopandas", "rasterio")


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys, workbench.cli as c\nc.build_parser().format_help()\n"
            f"print(__import__('json').dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_public_faces_still_resolve_lazily() -> None:
    from workbench import featurestore, linked, sentinel1, sentinel2
    from workbench.featurestore.store import FeatureStore

    assert featurestore.FeatureStore is FeatureStore
    assert callable(sentinel1.classify_scene) and callable(sentinel2.monthly_composite)
    assert "GeoStore" in dir(linked)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        linked.NoSuchThing  # noqa: B018


def test_missing_query_file_is_a_one_line_error(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sparql", "query", "@missing.rq", "--store", str(project_dir / "store")]) == 2
    err = capsys.readouterr().err
    assert "query file missing.rq does not exist" in err and "Traceback" not in err


def test_feature_store_that_does_not_exist(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fs", "--root", str(project_dir / "nonexistent"), "groups"]) == 2
    assert "no feature store at" in capsys.readouterr().err


def test_feature_store_on_s3_without_keys_names_the_settings(project_dir: Path, s3_server: dict,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORKBENCH_S3_ENDPOINT_URL", s3_server["endpoint_url"])
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(project_dir / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(project_dir / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["fs", "--root", "s3://some-bucket/fs", "groups"]) == 2
    err = capsys.readouterr().err
    assert "WORKBENCH_S3_ACCESS_KEY" in err and "Traceback" not in err


def test_models_commands_never_create_a_store_in_the_cwd(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORKBENCH_PROJECT_DIR", raising=False)
    assert main(["models", "list"]) == 2
    assert "no model registry at" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists()


def test_models_list_and_export_of_unknown_models(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from workbench import registry

    assert registry.list_models() == []  # creates the project's (empty) registry
    assert main(["models", "list"]) == 0
    assert "no model yet" in capsys.readouterr().out
    assert main(["models", "list", "no_such_model"]) == 2
    assert "no model named 'no_such_model' is registered" in capsys.readouterr().err
    assert main(["models", "export", "no_such_model", "champion", str(project_dir / "out")]) == 2
    err = capsys.readouterr().err
    assert "no model named 'no_such_model'" in err and "alias" not in err
    assert main(["models", "export", "no_such_model", "1", str(project_dir / "out.rar")]) == 2
    assert "unknown archive type" in capsys.readouterr().err
    assert not (project_dir / "out.rar").exists()


def test_catalogue_hint_names_a_command_that_exists(project_dir: Path) -> None:
    from workbench.catalog.local import _read
    from workbench.errors import CatalogError

    with pytest.raises(CatalogError) as info:
        _read(project_dir / "catalog.json")
    assert "python -m workbench.samples.build" in str(info.value)
    out = subprocess.run([sys.executable, "-m", "workbench.samples.build", "--help"], capture_output=True,
                         text=True, timeout=60, env={**os.environ})
    assert out.returncode == 0 and "--data-dir" in out.stdout


def test_exports_win_over_same_named_submodules() -> None:
    """`from workbench.sentinel1 import preprocess` is the function even after the submodule was imported."""
    code = ("import importlib, inspect\n"
            "importlib.import_module('workbench.sentinel1.preprocess')\n"
            "importlib.import_module('workbench.experiments.lagom')\n"
            "from workbench.sentinel1 import preprocess\n"
            "from workbench.experiments import lagom\n"
            "import sys\n"
            "module = sys.modules['workbench.sentinel1.preprocess']\n"
            "print(inspect.isfunction(preprocess), inspect.isfunction(lagom), inspect.ismodule(module))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr[-2000:]
