"""Packaging: the three dependency lists agree, the layout is complete, the kernel spec is sound."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_deps() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return project["dependencies"] + extras["ml"] + extras["gp"] + extras["lab"] + extras["test"]


def _env_deps(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in data["dependencies"] if isinstance(d, dict))
    return [d for d in pip if not d.startswith("-e")]


def _name(spec: str) -> str:
    return re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_files_list_the_pyproject_dependencies() -> None:
    expected = _pyproject_deps()
    assert _env_deps(ROOT / "environment.yml") == expected
    assert _env_deps(ROOT / "binder" / "environment.yml") == expected


def test_constraints_pin_every_direct_dependency() -> None:
    pinned = {
        _name(line) for line in (ROOT / "env" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    missing = {_name(d) for d in _pyproject_deps()} - pinned - {"dask", "moto"}
    assert not missing, f"env/constraints.txt lacks pins for {sorted(missing)}"


def test_layout_of_design_md() -> None:
    for entry in ["workbench", "notebooks", "kernels", "env", "tests", "binder", "benchmarks",
                  "environment.yml", "pyproject.toml", "Makefile", "README.md", ".ci/run"]:
        assert (ROOT / entry).exists(), entry
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_kernel_spec_runs_the_environment_python() -> None:
    spec = json.loads((ROOT / "kernels" / "workbench" / "kernel.json").read_text())
    # jupyter_client replaces a bare "python" with the interpreter that launches the kernel,
    # so the kernel always runs in the environment it was installed into (--sys-prefix).
    assert spec["argv"][0] == "python"
    assert spec["argv"][1:3] == ["-m", "ipykernel_launcher"]
    assert "{connection_file}" in spec["argv"]


def test_every_notebook_has_a_parameters_cell_with_literals() -> None:
    import ast

    import nbformat

    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters'"
        for node in ast.parse(tagged[0].source).body:
            assert isinstance(node, (ast.Assign, ast.AnnAssign)), f"{path.name}: parameters cell holds only assignments"
            ast.literal_eval(node.value)


def test_every_notebook_declares_the_workbench_kernel() -> None:
    """JupyterLab and Binder open each notebook with the workbench kernel, as papermill runs them."""
    import json

    kernel = json.loads((ROOT / "kernels" / "workbench" / "kernel.json").read_text())
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        spec = json.loads(path.read_text())["metadata"].get("kernelspec", {})
        assert spec.get("name") == "workbench", f"{path.name} declares kernel {spec.get('name')!r}"
        assert spec.get("display_name") == kernel["display_name"], path.name
