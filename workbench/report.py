"""The HTML report of a pipeline run: per stage its status, headline figures, thumbnails and map links.

People look rather than read: besides the table of stages, the report shows
for each finished stage the outputs of the cells its notebook tags
``headline`` (accuracy tables, counts, a benchmark line), thumbnails of the
pictures it drew (quicklooks, confusion matrices, maps rendered as images),
and links to the HTML maps it recorded as outputs.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["Highlights", "notebook_highlights", "render_report", "HEADLINE_TAG"]

log = logging.getLogger(__name__)

#: Cell tag whose outputs the report shows as the stage's headline figures.
HEADLINE_TAG = "headline"


@dataclass
class Highlights:
    """What the report shows of one executed notebook."""

    figures: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def _thumbnail(png_b64: str, width: int) -> str | None:
    """A PNG data URI at most ``width`` pixels wide (None when the image cannot be read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(base64.b64decode(png_b64)))
        image.thumbnail((width, width * 4))
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        log.debug("skipping an unreadable image output: %s", exc)
        return None
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def notebook_highlights(path: str | Path, *, max_images: int = 4, thumb_width: int = 320) -> Highlights:
    """Headline outputs (cells tagged ``headline``) and picture thumbnails of an executed notebook."""
    found = Highlights()
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return found
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        headline = HEADLINE_TAG in (cell.get("metadata", {}).get("tags") or [])
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if headline:
                if "text/html" in data:
                    found.figures.append(_text(data["text/html"]))
                elif "text/plain" in data:
                    found.figures.append(f"<pre>{escape(_text(data['text/plain']))}</pre>")
                elif output.get("output_type") == "stream":
                    found.figures.append(f"<pre>{escape(_text(output.get('text', '')))}</pre>")
            if "image/png" in data and len(found.images) < max_images:
                uri = _thumbnail(_text(data["image/png"]).strip(), thumb_width)
                if uri:
                    found.images.append(uri)
    return found


def _outputs(entry: Mapping[str, Any]) -> str:
    parts = []
    for key, value in (entry.get("outputs") or {}).items():
        target = str(value.get("path", ""))
        if target.endswith(".html") and "://" not in target:
            parts.append(f"{escape(key)}: <a href='{escape(Path(target).as_uri())}'>{escape(Path(target).name)}</a>")
        else:
            parts.append(f"{escape(key)}: <code>{escape(target)}</code>")
    return "<br>".join(parts)


def _stage_section(entry: Mapping[str, Any]) -> str:
    notebook = entry.get("output_notebook")
    if entry.get("status") != "ok" or not notebook or not Path(notebook).exists():
        return ""
    found = notebook_highlights(notebook)
    if not found.figures and not found.images:
        return ""
    figures = "".join(f"<div class='figure'>{f}</div>" for f in found.figures)
    images = "".join(f"<img src='{uri}' alt='{escape(entry['name'])} figure'>" for uri in found.images)
    return (f"<section id='stage-{escape(entry['name'])}'><h3>{escape(entry['name'])}</h3>{figures}"
            f"<div class='thumbs'>{images}</div></section>")


def render_report(record: Mapping[str, Any], *, stages: Sequence[Mapping[str, Any]] | None = None) -> str:
    """An HTML page of a run: the stage table, then each stage's headline figures and thumbnails."""
    from workbench.pipeline import stage_summary

    entries = list(stages if stages is not None else record["stages"])
    rows = []
    for entry, summary in zip(entries, stage_summary({"stages": entries})):
        notebook = entry.get("output_notebook")
        seconds = f"{summary['seconds']:.1f}" if summary["seconds"] is not None else ""
        link = f'<a href="{escape(Path(notebook).name)}">{escape(Path(notebook).name)}</a>' if notebook else ""
        rows.append(f"<tr class='{escape(entry['status'])}'><td><a href='#stage-{escape(entry['name'])}'>"
                    f"{escape(entry['name'])}</a></td><td>{escape(entry['status'])}</td><td>{seconds}</td>"
                    f"<td>{link}</td><td>{_outputs(entry) or escape(summary['error'])}</td></tr>")
    sections = "".join(_stage_section(entry) for entry in record["stages"])
    params = escape(json.dumps(record.get("parameters", {}), indent=1, default=str))
    build = record.get("workbench") or {}
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>run {escape(record['run_id'])}</title><style>"
        "body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
        "table{border-collapse:collapse}tr.failed,tr.interrupted{background:#fdd}tr.ok{background:#efe}"
        ".thumbs img{margin:4px;border:1px solid #ddd;max-width:320px}.figure{margin:.5em 0;overflow-x:auto}"
        "section{margin-top:1.5em}</style></head><body>"
        f"<h1>{escape(record['pipeline'])} run {escape(record['run_id'])}: {escape(record['status'])}</h1>"
        f"<p>started {escape(str(record.get('started')))}, ended {escape(str(record.get('ended')))}, "
        f"git commit {escape(str(record.get('git_commit')))}, workbench {escape(str(build.get('version')))} "
        f"({escape(str(build.get('commit')))}), {len(record.get('attempts') or [])} attempt(s)</p>"
        "<table><tr><th>stage</th><th>status</th><th>seconds</th><th>executed notebook</th>"
        "<th>outputs / error</th></tr>" + "".join(rows) + "</table>"
        f"<h2>Results</h2>{sections or '<p>no figures yet</p>'}"
        f"<h2>Parameters</h2><pre>{params}</pre></body></html>"
    )
