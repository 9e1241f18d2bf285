"""A tiny STAC API for tests: stdlib ``http.server`` on 127.0.0.1 in a daemon thread.

Serves the landing page, ``/conformance``, ``/collections[/<id>]``, item search
(``GET``/``POST /search``: bbox, datetime interval, collections, ``query`` on
``eo:cloud_cover``, ``limit``, pagination through a ``next`` link carrying a token)
and, optionally, the asset files themselves (``/assets/<path>``, with HEAD and
byte ranges so GDAL's /vsicurl/ can read COGs from it).

Flakiness for retry tests: fail the first ``fail_first`` API requests with
``fail_status`` (503), or every one (``always_fail``); answer 403 to the first
``asset_forbid_first`` signed asset requests (an expired SAS token). Every request
is recorded in ``requests``. The server stops on ``stop()``/context exit, and by
itself after ``lifetime_s`` at the latest.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]

_OPS = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}


def _parse_dt(text: str) -> datetime | None:
    if text in ("", ".."):
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class StacServer:
    """``with StacServer(items) as srv: Client.open(srv.url)``; ``items`` are pystac Items."""

    def __init__(
        self,
        items,
        collection="sentinel-2-l2a",
        page_size=2,
        fail_first=0,
        always_fail=False,
        fail_status=503,
        asset_root=None,
        asset_fail_first=0,
        asset_forbid_first=0,
        require_sig=None,
        lifetime_s=120.0,
    ):
        self.collection = collection
        self.page_size = page_size
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.fail_status = fail_status
        self.asset_root = Path(asset_root).resolve() if asset_root else None
        self.asset_fail_first = asset_fail_first
        self.asset_forbid_first = asset_forbid_first
        self.require_sig = require_sig  # asset requests need ?sig=<this> (403 otherwise)
        self.lifetime_s = lifetime_s
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.asset_bytes_sent = 0  # body bytes of asset responses (GET), to measure windowed reads
        self._lock = threading.Lock()
        self._api_seen = 0
        self._asset_seen = 0
        self._forbidden = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._items = [self._item_dict(it) for it in items]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> StacServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StacServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- counters ----------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self.requests)

    def count_path(self, prefix: str) -> int:
        return sum(1 for _, p in self.requests if urlsplit(p).path.startswith(prefix))

    # ---- content -----------------------------------------------------------------------------
    def _item_dict(self, item) -> dict:
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        d["collection"] = self.collection
        d["links"] = [
            {"rel": "self", "href": f"{self.url}/collections/{self.collection}/items/{item.id}"},
            {"rel": "collection", "href": f"{self.url}/collections/{self.collection}"},
            {"rel": "root", "href": f"{self.url}/"},
        ]
        if self.asset_root is not None:
            for asset in d["assets"].values():
                p = Path(asset["href"]).resolve()
                if p.is_relative_to(self.asset_root):
                    asset["href"] = f"{self.url}/assets/{p.relative_to(self.asset_root).as_posix()}"
        return d

    def landing(self) -> dict:
        return {
            "type": "Catalog",
            "id": "test-api",
            "stac_version": "1.0.0",
            "description": "test STAC API",
            "conformsTo": CONFORMANCE,
            "links": [
                {"rel": "self", "href": f"{self.url}/", "type": "application/json"},
                {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
                {"rel": "conformance", "href": f"{self.url}/conformance"},
                {"rel": "data", "href": f"{self.url}/collections"},
                {"rel": "child", "href": f"{self.url}/collections/{self.collection}"},
                {"rel": "search", "href": f"{self.url}/search", "method": "GET", "type": "application/geo+json"},
                {"rel": "search", "href": f"{self.url}/search", "method": "POST", "type": "application/geo+json"},
            ],
        }

    def collection_dict(self) -> dict:
        return {
            "type": "Collection",
            "id": self.collection,
            "stac_version": "1.0.0",
            "description": "test",
            "license": "proprietary",
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
            "links": [
                {"rel": "self", "href": f"{self.url}/collections/{self.collection}"},
                {"rel": "root", "href": f"{self.url}/"},
                {"rel": "items", "href": f"{self.url}/collections/{self.collection}/items"},
            ],
        }

    def search(self, params: dict, method: str) -> dict:
        feats = list(self._items)
        if params.get("collections"):
            feats = [f for f in feats if f["collection"] in params["collections"]]
        if params.get("ids"):
            feats = [f for f in feats if f["id"] in params["ids"]]
        if params.get("bbox"):
            b = [float(v) for v in params["bbox"]]
            feats = [
                f
                for f in feats
                if f["bbox"][0] <= b[2] and b[0] <= f["bbox"][2] and f["bbox"][1] <= b[3] and b[1] <= f["bbox"][3]
            ]
        if params.get("datetime"):
            parts = str(params["datetime"]).split("/")
            lo, hi = _parse_dt(parts[0]), _parse_dt(parts[-1])
            feats = [
                f
                for f in feats
                if (lo is None or _parse_dt(f["properties"]["datetime"]) >= lo)
                and (hi is None or _parse_dt(f["properties"]["datetime"]) <= hi)
            ]
        for prop, conds in (params.get("query") or {}).items():
            for op, val in conds.items():
                feats = [f for f in feats if prop in f["properties"] and _OPS[op](f["properties"][prop], val)]
        limit = min(int(params.get("limit") or self.page_size), self.page_size)
        start = int(str(params.get("token") or "next:0").split(":")[1])
        page = feats[start : start + limit]
        links = [{"rel": "root", "href": f"{self.url}/"}]
        if start + limit < len(feats):
            token = f"next:{start + limit}"
            if method == "POST":
                links.append(
                    {
                        "rel": "next",
                        "href": f"{self.url}/search",
                        "method": "POST",
                        "body": {"token": token},
                        "merge": True,
                        "type": "application/geo+json",
                    }
                )
            else:
                q = {k: v for k, v in params.items() if v not in (None, "", [])}
                q = {
                    k: (",".join(map(str, v)) if isinstance(v, list) else json.dumps(v) if isinstance(v, dict) else v)
                    for k, v in q.items()
                }
                q["token"] = token
                links.append(
                    {
                        "rel": "next",
                        "href": f"{self.url}/search?{urlencode(q)}",
                        "method": "GET",
                        "type": "application/geo+json",
                    }
                )
        return {
            "type": "FeatureCollection",
            "features": page,
            "links": links,
            "numberMatched": len(feats),
            "numberReturned": len(page),
        }

    # ---- HTTP ---------------------------------------------------------------------------------
    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status, body=b"", ctype="application/json", headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, obj, status=200):
                self._send(
                    status,
                    json.dumps(obj).encode(),
                    "application/geo+json" if "features" in obj else "application/json",
                )

            def _handle(self):
                with server._lock:
                    server.requests.append((self.command, self.path))
                parts = urlsplit(self.path)
                path = parts.path.rstrip("/") or "/"
                body = b""
                if self.command == "POST":
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if path.startswith("/assets/"):
                    return self._asset(path[len("/assets/") :], parse_qs(parts.query))
                with server._lock:
                    server._api_seen += 1
                    fail = server.always_fail or server._api_seen <= server.fail_first
                if fail:
                    return self._json({"code": "Unavailable", "description": "flaky test server"}, server.fail_status)
                if path == "/":
                    return self._json(server.landing())
                if path == "/conformance":
                    return self._json({"conformsTo": CONFORMANCE})
                if path == "/collections":
                    return self._json({"collections": [server.collection_dict()], "links": []})
                if path == f"/collections/{server.collection}":
                    return self._json(server.collection_dict())
                if path == "/search":
                    if self.command == "POST":
                        params = json.loads(body or b"{}")
                    else:
                        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                        params = dict(q)
                        for key in ("bbox", "collections", "ids"):
                            if key in q:
                                params[key] = q[key].split(",")
                        if "query" in q:
                            params["query"] = json.loads(q["query"])
                    try:
                        return self._json(server.search(params, self.command))
                    except (ValueError, KeyError) as err:
                        return self._json({"code": "BadRequest", "description": str(err)}, 400)
                return self._json({"code": "NotFound", "description": path}, 404)

            def _asset(self, rel, query):
                if server.asset_root is None:
                    return self._send(404, b"no assets", "text/plain")
                with server._lock:
                    server._asset_seen += 1
                    fail = server._asset_seen <= server.asset_fail_first
                    forbid = False
                    if server.require_sig is not None and query.get("sig"):
                        if server._forbidden < server.asset_forbid_first:
                            server._forbidden += 1
                            forbid = True
                if fail:
                    return self._send(503, b"flaky", "text/plain")
                if server.require_sig is not None and (forbid or query.get("sig", [None])[0] != server.require_sig):
                    return self._send(
                        403, b"AuthenticationFailed: Signature not valid in the specified time frame", "text/plain"
                    )
                p = (server.asset_root / rel).resolve()
                if not p.is_relative_to(server.asset_root) or not p.is_file():
                    return self._send(404, b"not found", "text/plain")
                data = p.read_bytes()
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    a, _, b = rng[6:].split(",")[0].partition("-")
                    start = int(a) if a else max(0, len(data) - int(b))
                    end = min(int(b), len(data) - 1) if (a and b) else len(data) - 1
                    chunk = data[start : end + 1]
                    if self.command == "GET":
                        server.asset_bytes_sent += len(chunk)
                    return self._send(
                        206,
                        chunk,
                        "image/tiff",
                        {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes"},
                    )
                if self.command == "GET":
                    server.asset_bytes_sent += len(data)
                return self._send(200, data, "image/tiff", {"Accept-Ranges": "bytes"})

            do_GET = do_POST = do_HEAD = _handle

        return Handler
