"""Settings from defaults, workbench.toml and WORKBENCH_* variables; clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.config import load_settings
from workbench.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(environ={}, project_dir=tmp_path)
    assert s.storage_root == str(tmp_path / "workbench-data")
    assert s.dask_address is None
    assert s.catalog_backend == "local"
    assert s.stac_url.startswith("https://stac.dataspace.copernicus.eu")
    assert "odata/v1" in s.odata_url


def test_toml_then_env_then_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "workbench.toml"
    toml.write_text('[workbench]\nstorage_root = "s3://bucket/prefix"\ndask_workers = 3\nconnect_timeout = 2.5\n')
    env = {"WORKBENCH_CONFIG": str(toml), "WORKBENCH_DASK_WORKERS": "4", "WORKBENCH_S3_SECRET_KEY": "sekret"}
    s = load_settings(environ=env)
    assert s.storage_root == "s3://bucket/prefix"
    assert s.dask_workers == 4
    assert s.connect_timeout == 2.5
    assert s.public()["s3_secret_key"] == "***"
    assert load_settings(environ=env, dask_workers=1).dask_workers == 1


def test_top_level_keys_in_toml(tmp_path: Path) -> None:
    toml = tmp_path / "w.toml"
    toml.write_text('dask_address = "tcp://10.0.0.1:8786"\n')
    assert load_settings(config_file=toml, environ={}).dask_address == "tcp://10.0.0.1:8786"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('storage_rot = "x"\n', "storage_rot"),
        ("dask_workers = \"many\"\n", "dask_workers"),
        ("dask_workers = 1.5\n", "dask_workers"),
        ("connect_timeout = true\n", "connect_timeout"),
        ('catalog_backend = "ftp"\n', "catalog_backend"),
        ("this is = not toml =\n", "not valid TOML"),
        ('[workbench]\nx = 1\n[other]\ny = 2\n', "other"),
    ],
)
def test_bad_toml_names_the_key(tmp_path: Path, content: str, needle: str) -> None:
    toml = tmp_path / "workbench.toml"
    toml.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_settings(config_file=toml, environ={})


def test_bad_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="WORKBENCH_DASK_WORKRS"):
        load_settings(environ={"WORKBENCH_DASK_WORKRS": "2"})
    with pytest.raises(ConfigError, match="WORKBENCH_DASK_WORKERS"):
        load_settings(environ={"WORKBENCH_DASK_WORKERS": "two"})
    with pytest.raises(ConfigError, match="dask_workers"):
        load_settings(environ={"WORKBENCH_DASK_WORKERS": "0"})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml", environ={})


def test_unknown_override() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load_settings(environ={}, bogus=1)


def test_pipeline_markers_are_not_settings() -> None:
    s = load_settings(environ={"WORKBENCH_RUN_DIR": "/tmp/x", "WORKBENCH_STAGE": "setup"})
    assert s.catalog_backend == "local"


def test_s3_storage_options() -> None:
    s = load_settings(environ={"WORKBENCH_S3_ENDPOINT_URL": "http://127.0.0.1:9", "WORKBENCH_S3_ACCESS_KEY": "k",
                               "WORKBENCH_S3_SECRET_KEY": "s", "WORKBENCH_CONNECT_TIMEOUT": "3"})
    opts = s.storage_options()
    assert opts["endpoint_url"] == "http://127.0.0.1:9"
    assert (opts["key"], opts["secret"]) == ("k", "s")
    assert opts["config_kwargs"]["connect_timeout"] == 3.0
