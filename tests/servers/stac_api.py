"""A small STAC API (core + item-search + CQL2-JSON filter on eo:cloud_cover) over http.server.

It serves items held in memory, with bbox/datetime/collections/limit and
``next`` links (GET: ``token`` query parameter; POST: ``body`` with ``token``).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import shapely.geometry


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _match_filter(props: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    if not flt:
        return True
    op, args = flt["op"], flt["args"]
    if op == "and":
        return all(_match_filter(props, a) for a in args)
    value = props.get(args[0]["property"])
    if value is None:
        return False
    if op == "<=":
        return value <= args[1]
    if op == "=":
        return value == args[1]
    raise ValueError(f"unsupported filter op {op}")


class StacApi:
    """Serve ``items`` (dicts) of ``collections`` on 127.0.0.1; records the requests it got."""

    def __init__(self, collections: list[str], items: list[dict[str, Any]]) -> None:
        self.collections = collections
        self.items = items
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                return

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/geo+json" if "features" in body else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                api.requests.append(("GET", url.path, query))
                if url.path in ("/", ""):
                    return self._send(200, api.landing())
                if url.path == "/conformance":
                    return self._send(200, {"conformsTo": api.conformance()})
                if url.path == "/collections":
                    return self._send(200, {"collections": [api.collection(c) for c in api.collections], "links": []})
                if url.path.startswith("/collections/"):
                    cid = url.path.split("/")[2]
                    if cid not in api.collections:
                        return self._send(404, {"code": "NotFound", "description": f"collection {cid} not found"})
                    return self._send(200, api.collection(cid))
                if url.path == "/search":
                    params: dict[str, Any] = dict(query)
                    if "bbox" in params:
                        params["bbox"] = [float(v) for v in params["bbox"].split(",")]
                    if "collections" in params:
                        params["collections"] = params["collections"].split(",")
                    if "filter" in params:
                        params["filter"] = json.loads(params["filter"])
                    return self._send(*api.search(params, method="GET"))
                return self._send(404, {"code": "NotFound"})

            def do_POST(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                api.requests.append(("POST", url.path, body))
                if url.path == "/search":
                    return self._send(*api.search(body, method="POST"))
                return self._send(404, {"code": "NotFound"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "StacApi":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def landing(self) -> dict[str, Any]:
        return {
            "type": "Catalog", "stac_version": "1.1.0", "id": "loopback", "description": "test STAC API",
            "conformsTo": self.conformance(),
            "links": [
                {"rel": "self", "href": f"{self.url}/", "type": "application/json"},
                {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
                {"rel": "conformance", "href": f"{self.url}/conformance"},
                {"rel": "data", "href": f"{self.url}/collections", "type": "application/json"},
                {"rel": "search", "href": f"{self.url}/search", "type": "application/geo+json", "method": "GET"},
                {"rel": "search", "href": f"{self.url}/search", "type": "application/geo+json", "method": "POST"},
            ],
        }

    @staticmethod
    def conformance() -> list[str]:
        return [
            "https://api.stacspec.org/v1.0.0/core",
            "https://api.stacspec.org/v1.0.0/item-search",
            "https://api.stacspec.org/v1.0.0/collections",
            "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
            "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
            "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
            "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
        ]

    def collection(self, cid: str) -> dict[str, Any]:
        return {
            "type": "Collection", "stac_version": "1.1.0", "id": cid, "description": cid, "license": "other",
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
            "links": [{"rel": "self", "href": f"{self.url}/collections/{cid}"}],
        }

    def search(self, params: dict[str, Any], *, method: str) -> tuple[int, dict[str, Any]]:
        limit = int(params.get("limit", 10))
        offset = int(params.get("token", 0))
        hits = list(self.items)
        if params.get("collections"):
            hits = [i for i in hits if i["collection"] in params["collections"]]
        if params.get("bbox"):
            box = shapely.geometry.box(*params["bbox"])
            hits = [i for i in hits if shapely.geometry.shape(i["geometry"]).intersects(box)]
        if params.get("datetime"):
            start, _, end = params["datetime"].partition("/")
            t0 = _time(start) if start not in ("", "..") else dt.datetime.min.replace(tzinfo=dt.timezone.utc)
            t1 = _time(end) if end not in ("", "..") else dt.datetime.max.replace(tzinfo=dt.timezone.utc)
            hits = [i for i in hits if t0 <= _time(i["properties"]["datetime"]) <= t1]
        if params.get("filter"):
            hits = [i for i in hits if _match_filter(i["properties"], params["filter"])]
        page = hits[offset: offset + limit]
        links = []
        if offset + limit < len(hits):
            if method == "GET":
                q = {k: (",".join(map(str, v)) if isinstance(v, list) else (json.dumps(v) if isinstance(v, dict) else v))
                     for k, v in params.items() if k != "token"}
                q["token"] = str(offset + limit)
                links.append({"rel": "next", "href": f"{self.url}/search?{urlencode(q)}", "method": "GET",
                              "type": "application/geo+json"})
            else:
                links.append({"rel": "next", "href": f"{self.url}/search", "method": "POST", "merge": True,
                              "body": {"token": str(offset + limit)}, "type": "application/geo+json"})
        return 200, {"type": "FeatureCollection", "features": page, "links": links,
                     "numberMatched": len(hits), "numberReturned": len(page)}
