"""Checks on executed notebooks: the cells that show results must show something (issue 17, item 17).

A cell tagged ``headline`` (its outputs are the stage's headline figures in the
run report) must have a non-empty output; a cell tagged ``showcase`` (plots)
must show at least one picture; no output may report an empty answer
("0 observations").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_EMPTY_ANSWER = re.compile(r"(^|\n)0 observations\b")


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def assert_showcases_shown(notebook: str | Path | dict[str, Any]) -> None:
    """Fail when a ``headline`` cell printed nothing or a ``showcase`` cell drew nothing."""
    nb = notebook if isinstance(notebook, dict) else json.loads(Path(notebook).read_text())
    tagged = 0
    for index, cell in enumerate(nb["cells"]):
        tags = set(cell.get("metadata", {}).get("tags") or [])
        if cell.get("cell_type") != "code" or not tags & {"headline", "showcase"}:
            continue
        tagged += 1
        outputs = cell.get("outputs", [])
        texts = [_text(o.get("text", "")) for o in outputs if o.get("output_type") == "stream"]
        texts += [_text(o.get("data", {}).get(k, "")) for o in outputs for k in ("text/plain", "text/html")]
        shown = [t for t in texts if t.strip()] + [o for o in outputs if "image/png" in o.get("data", {})]
        where = f"cell {index} ({', '.join(sorted(tags))}): {cell.get('source', '')[:80]!r}"
        assert shown, f"{where} shows nothing"
        if "showcase" in tags:
            assert any("image/png" in o.get("data", {}) for o in outputs), f"{where} draws no picture"
        for text in texts:
            assert not _EMPTY_ANSWER.search(text), f"{where} answers nothing: {text[:200]!r}"
    assert tagged, "the notebook tags no headline or showcase cell"


def demo_stage_pipeline(stage_name: str, directory: Path, **parameters: Any) -> Path:
    """A one-stage pipeline file in ``directory``: the demo's ``stage_name`` with ``parameters`` overridden.

    The stage keeps the demo chain's settings, runs on the ``python3`` kernel and writes its data
    under ``directory / "data"``.
    """
    import yaml

    root = Path(__file__).resolve().parents[1]
    demo = yaml.safe_load((root / "notebooks" / "pipelines" / "demo.yaml").read_text())
    stage = next(s for s in demo["stages"] if s["name"] == stage_name)
    stage = dict(stage, notebook=str(root / stage["notebook"]), parameters={**stage["parameters"], **parameters})
    directory.mkdir(parents=True, exist_ok=True)
    pipeline = directory / f"{stage_name}.yaml"
    pipeline.write_text(yaml.safe_dump({**demo, "name": stage_name, "stages": [stage], "kernel": "python3",
                                        "parameters": {**demo["parameters"], "data_dir": str(directory / "data")}}))
    return pipeline
