"""An in-memory stand-in for api.brain-map.org, served through ``httpx.MockTransport``.

It answers the endpoints :mod:`ishwh.allen.queries` builds with the documented response
shapes (RMA envelopes with real paging, JPEG section images, grid zips) from records you
give it, and can inject failures (503, ``success: false``, truncated bodies, dropped
connections). Tests and demos use it so that no socket is ever opened.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

_AGE_RE = re.compile(r"age\[name\$in([^\]]*)\]")
_GENES_RE = re.compile(r"genes\[acronym\$in([^\]]*)\]")
_EQ_RE = r"\[{field}\$eq(\d+)\]"


def _values(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


@dataclass
class FakeAllenApi:
    """Records to serve, failures to inject, and a log of every request URL.

    ``failures`` maps a substring of the URL to a queue of actions taken (one per matching
    request, first to last) before the normal answer: ``"503"``, ``"404"``,
    ``"success_false"``, ``"truncate"`` (half the body, full Content-Length), ``"drop"``
    (connection error) or ``"kill"`` (KeyboardInterrupt, as from Ctrl-C).
    """

    ontology: list[dict[str, Any]] = field(default_factory=list)     # nested nodes
    data_sets: list[dict[str, Any]] = field(default_factory=list)
    section_images: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    images: dict[int, bytes] = field(default_factory=dict)
    default_image: bytes | None = None
    grids: dict[int, bytes] = field(default_factory=dict)
    grid_annotations: dict[str, bytes] = field(default_factory=dict)
    annotation_volumes: dict[str, bytes] = field(default_factory=dict)   # stage -> zip
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    requests: list[str] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def fail(self, url_part: str, *actions: str) -> None:
        """Queue ``actions`` for the next requests whose URL contains ``url_part``."""
        self.failures.setdefault(url_part, []).extend(actions)

    # -- dispatch
    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(url)
        for part, queue in self.failures.items():
            if part in url and queue:
                action = queue.pop(0)
                if action == "kill":  # as if the user pressed Ctrl-C mid-download
                    raise KeyboardInterrupt
                if action == "drop":
                    raise httpx.ConnectError("connection refused", request=request)
                if action in ("503", "404", "500", "429"):
                    return httpx.Response(int(action), text="Service Unavailable")
                if action == "success_false":
                    return httpx.Response(200, json={"success": False, "id": 0,
                                                     "msg": "Data Access error: temporarily "
                                                            "unavailable"})
                if action == "truncate":
                    full = self._answer(request)
                    return httpx.Response(
                        200, content=full.content[: len(full.content) // 2],
                        headers={"content-length": str(len(full.content)),
                                 "content-type": full.headers.get("content-type", "")})
                raise ValueError(f"unknown fake failure {action!r}")
        return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/api/v2/structure_graph_download/"):
            root = {"id": 15564, "acronym": "root", "name": "root", "st_level": None,
                    "parent_structure_id": None, "graph_order": 0,
                    "children": self.ontology}
            return _envelope([root], 0, 1)
        if path == "/api/v2/data/query.json":
            return self._rma(request.url.params.get("criteria", ""))
        m = re.match(r"/api/v2/section_image_download/(\d+)$", path)
        if m:
            data = self.images.get(int(m.group(1)), self.default_image)
            if data is None:
                return httpx.Response(404, text="no such image")
            return httpx.Response(200, content=data, headers={"content-type": "image/jpeg"})
        m = re.match(r"/grid_data/download/(\d+)$", path)
        if m:
            data = self.grids.get(int(m.group(1)))
            if data is None:
                return httpx.Response(404, text="no grid")
            return httpx.Response(200, content=data, headers={"content-type": "application/zip"})
        m = re.search(r"/(\w+)_DevMouse2012_annotation\.zip$", path)
        if m and m.group(1).replace("pt", ".") in self.annotation_volumes:
            return httpx.Response(200, content=self.annotation_volumes[
                m.group(1).replace("pt", ".")], headers={"content-type": "application/zip"})
        m = re.search(r"/(\w+)_DevMouse2012_gridAnnotation\.zip$", path)
        if m and m.group(1).replace("pt", ".") in self.grid_annotations:
            return httpx.Response(200, content=self.grid_annotations[m.group(1).replace("pt", ".")])
        return httpx.Response(404, text=f"no route for {path}")

    def _rma(self, stmt: str) -> httpx.Response:
        model = re.search(r"model::(\w+)", stmt)
        num = re.search(r"num_rows\$eq(\d+)", stmt)
        start = re.search(r"start_row\$eq(\d+)", stmt)
        if not model:
            return httpx.Response(200, json={"success": False, "msg": "no model given"})
        rows = self._rows(model.group(1), stmt)
        if rows is None:
            return httpx.Response(200, json={"success": False,
                                             "msg": f"unknown model {model.group(1)}"})
        s = int(start.group(1)) if start else 0
        n = int(num.group(1)) if num else 50
        return _envelope(rows[s: s + n], s, len(rows))

    def _rows(self, model: str, stmt: str) -> list[dict[str, Any]] | None:
        if model == "SectionDataSet":
            ages = _AGE_RE.search(stmt)
            genes = _GENES_RE.search(stmt)
            one = re.search(r"rma::criteria,\[id\$eq(\d+)\]", stmt)   # one data set by id
            out = []
            for ds in sorted(self.data_sets, key=lambda d: d["id"]):
                if one and ds["id"] != int(one.group(1)):
                    continue
                if "section_images(alignment2d)" in stmt:   # the alignment records
                    ds = {**ds, "section_images": self.section_images.get(ds["id"], [])}
                age = ds["specimen"]["donor"]["age"]["name"]
                if ages and age not in _values(ages.group(1)):
                    continue
                if genes and not {g["acronym"] for g in ds["genes"]} & set(_values(genes.group(1))):
                    continue
                if "[delegate$eqtrue]" in stmt and not ds.get("delegate"):
                    continue
                out.append(ds)
            return out
        if model == "Structure":
            flat, stack = [], list(self.ontology)
            while stack:
                node = stack.pop()
                flat.append({k: v for k, v in node.items() if k != "children"})
                stack.extend(node.get("children") or [])
            return sorted(flat, key=lambda r: r.get("graph_order") or 0)
        if model == "SectionImage":
            m = re.search(_EQ_RE.format(field="data_set_id"), stmt)
            rows = self.section_images.get(int(m.group(1)), []) if m else []
            return sorted(rows, key=lambda r: r["section_number"])
        if model == "ManualAnnotation":
            m = re.search(_EQ_RE.format(field="section_data_set_id"), stmt)
            rows = self.annotations.get(int(m.group(1)), []) if m else []
            return sorted(rows, key=lambda r: r["id"])
        return None


def _envelope(rows: list[dict[str, Any]], start: int, total: int) -> httpx.Response:
    body = {"success": True, "id": 0, "start_row": start, "num_rows": len(rows),
            "total_rows": total, "msg": rows}
    return httpx.Response(200, content=json.dumps(body).encode(),
                          headers={"content-type": "application/json"})
