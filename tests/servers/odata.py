"""A CDSE-style OData catalogue (``/odata/v1/Products``) over http.server.

It parses the ``$filter`` forms the CDSE documentation gives (Collection/Name,
OData.CSC.Intersects with a WKT polygon, ContentDate/Start bounds, productType
and cloudCover attributes), answers 400 to anything else, and enforces the
``$top`` (1,000) and ``$skip`` (10,000 by default) caps.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import shapely.geometry
import shapely.wkt

_CLAUSES = {
    "collection": re.compile(r"^Collection/Name eq '([A-Z0-9-]+)'$"),
    "area": re.compile(r"^OData\.CSC\.Intersects\(area=geography'SRID=4326;(POLYGON\(\(.+\)\))'\)$"),
    "start_ge": re.compile(r"^ContentDate/Start ge (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)$"),
    "start_le": re.compile(r"^ContentDate/Start le (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)$"),
    "product_type": re.compile(
        r"^Attributes/OData\.CSC\.StringAttribute/any\(att:att/Name eq 'productType' and "
        r"att/OData\.CSC\.StringAttribute/Value eq '([\w]+)'\)$"),
    "cloud_le": re.compile(
        r"^Attributes/OData\.CSC\.DoubleAttribute/any\(att:att/Name eq 'cloudCover' and "
        r"att/OData\.CSC\.DoubleAttribute/Value le ([\d.]+)\)$"),
}


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_filter(text: str) -> dict[str, str]:
    """Split a ``$filter`` on top-level `` and `` and match each clause; ValueError if one is unknown."""
    clauses, depth, current = [], 0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and text.startswith(" and ", i):
            clauses.append(current)
            current = ""
            i += 5
            continue
        current += ch
        i += 1
    clauses.append(current)
    parsed: dict[str, str] = {}
    for clause in clauses:
        for key, pattern in _CLAUSES.items():
            m = pattern.match(clause)
            if m:
                parsed[key] = m.group(1)
                break
        else:
            raise ValueError(f"unsupported clause: {clause}")
    return parsed


class ODataCatalogue:
    """Serve ``products`` (CDSE OData product dicts) on 127.0.0.1; records the queries it got."""

    def __init__(self, products: list[dict[str, Any]], *, max_skip: int = 10_000, max_top: int = 1_000) -> None:
        self.products = products
        self.max_skip = max_skip
        self.max_top = max_top
        self.queries: list[dict[str, str]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                if url.path != "/odata/v1/Products":
                    return self._send(404, {"detail": "not found"})
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                api.queries.append(query)
                code, body = api.answer(query)
                return self._send(code, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/odata/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "ODataCatalogue":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            flt = parse_filter(query["$filter"])
            top, skip = int(query.get("$top", 20)), int(query.get("$skip", 0))
        except (KeyError, ValueError) as exc:
            return 400, {"detail": f"Invalid filter or paging: {exc}"}
        if top > self.max_top or skip > self.max_skip:
            return 400, {"detail": f"$top must be <= {self.max_top} and $skip <= {self.max_skip}"}
        hits = []
        area = shapely.wkt.loads(flt["area"]) if "area" in flt else None
        for p in self.products:
            attrs = {a["Name"]: a["Value"] for a in p["Attributes"]}
            start = _time(p["ContentDate"]["Start"])
            if "collection" in flt and p["Collection"] != flt["collection"]:
                continue
            if area is not None and not shapely.geometry.shape(p["GeoFootprint"]).intersects(area):
                continue
            if "start_ge" in flt and start < _time(flt["start_ge"]):
                continue
            if "start_le" in flt and start > _time(flt["start_le"]):
                continue
            if "product_type" in flt and attrs.get("productType") != flt["product_type"]:
                continue
            if "cloud_le" in flt and attrs.get("cloudCover", 0) > float(flt["cloud_le"]):
                continue
            hits.append(p)
        if query.get("$orderby") == "ContentDate/Start asc":
            hits.sort(key=lambda p: p["ContentDate"]["Start"])
        page = hits[skip: skip + top]
        if query.get("$expand") != "Attributes":
            page = [{k: v for k, v in p.items() if k != "Attributes"} for p in page]
        page = [{k: v for k, v in p.items() if k != "Collection"} for p in page]
        return 200, {"@odata.context": "$metadata#Products", "value": page}
