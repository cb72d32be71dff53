"""An HTTP client for api.brain-map.org: retries, paging, a polite concurrency limit and an
on-disk cache keyed by URL.

The cache is what makes ingestion resumable and portable: every JSON response and every
downloaded file is kept under ``cache_dir``; a re-run asks the network only for what has not
succeeded yet, and ``offline=True`` serves everything from the cache (fetch on one machine,
ingest on another). Nothing is cached until it was checked: JSON must parse and say
``success: true``; a file must have the size the server announced and be a complete image or
zip. Files are written to ``*.part`` and renamed, so a killed download never looks finished.

Layout: ``<cache_dir>/json/<h[:2]>/<h>.json`` and ``<cache_dir>/files/<h[:2]>/<h><suffix>``
with ``<h>.meta.json`` (url, file, size, sha256) beside each file, ``h = sha256(url)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ishwh.allen.queries import API_BASE, PAGE_SIZE, Rma
from ishwh.environment import remove_stale_parts
from ishwh.errors import InvalidInput, NetworkError, NotFound

USER_AGENT = "ishwh (ISH warehouse; https://api.brain-map.org client)"


class Unreachable(NetworkError):
    """The host could not be connected to at all (no point trying other URLs)."""


class _Transient(Exception):
    """A failure worth retrying (5xx, 429, timeout, broken connection, bad body)."""


def default_cache_dir() -> Path:
    """``$ISHWH_ALLEN_CACHE``, else ``$XDG_CACHE_HOME/ishwh/allen`` (``~/.cache/...``)."""
    if os.environ.get("ISHWH_ALLEN_CACHE"):
        return Path(os.environ["ISHWH_ALLEN_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "ishwh" / "allen"


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- body checks


def sniff_suffix(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    if data[:4] == b"PK\x03\x04":
        return ".zip"
    return ".bin"


def check_image(data: bytes) -> str | None:
    """Why ``data`` is not a complete image, or None when it is."""
    kind = sniff_suffix(data)
    if kind == ".jpg":
        # A JPEG ends with the EOI marker (FF D9); allow a little padding after it.
        return None if b"\xff\xd9" in data[-64:] else "JPEG is truncated (no end marker)"
    if kind == ".png":
        return None if b"IEND" in data[-16:] else "PNG is truncated (no IEND chunk)"
    if kind == ".tif":
        return None
    head = data[:80].decode("latin-1", "replace").strip()
    return f"not an image (starts with {head!r})"


def check_zip(data: bytes) -> str | None:
    """Why ``data`` is not a complete, readable zip, or None when it is."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            bad = zf.testzip()
    except zipfile.BadZipFile as exc:
        return f"not a complete zip ({exc})"
    return f"zip member {bad} is corrupt" if bad else None


# --------------------------------------------------------------------------- the client


@dataclass
class ClientStats:
    requests: int = 0        # HTTP requests sent (retries included)
    retries: int = 0
    cache_hits: int = 0
    bytes_downloaded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries,
                "cache_hits": self.cache_hits, "bytes_downloaded": self.bytes_downloaded}


class AllenClient:
    """Talks to api.brain-map.org (or serves its cache).

    Parameters
    ----------
    cache_dir:
        Where responses and files are kept (default :func:`default_cache_dir`).
    offline:
        Serve only from the cache; a missing entry raises :class:`NotFound`.
    transport:
        An httpx transport (tests pass ``httpx.MockTransport``).
    concurrency:
        At most this many requests in flight at once, across threads (politeness).
    retries:
        Attempts per request for transient failures (5xx, 429, timeouts, dropped
        connections, ``success: false``, truncated downloads).
    backoff_s:
        Exponential backoff multiplier: waits ``backoff_s * 2**n`` seconds (capped at 60).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike | None = None,
        *,
        offline: bool = False,
        transport: httpx.BaseTransport | None = None,
        base_url: str = API_BASE,
        concurrency: int = 4,
        retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 120.0,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if retries < 1:
            raise ValueError("retries must be at least 1")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.offline = offline
        if not offline:  # a --from-cache folder is the user's copy: never changed
            for sub in ("json", "files"):
                remove_stale_parts(self.cache_dir / sub)  # of a killed earlier download
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.stats = ClientStats()
        self._slots = threading.BoundedSemaphore(concurrency)
        self.concurrency = concurrency
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=20.0),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,
        )

    # -- lifecycle
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AllenClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cache paths
    def _json_path(self, url: str) -> Path:
        h = url_key(url)
        return self.cache_dir / "json" / h[:2] / f"{h}.json"

    def _meta_path(self, url: str) -> Path:
        h = url_key(url)
        return self.cache_dir / "files" / h[:2] / f"{h}.meta.json"

    def is_cached(self, url: str) -> bool:
        return self._json_path(url).exists() or self._cached_file(url) is not None

    # -- HTTP with retries
    def _fetch(self, url: str, check: Callable[[httpx.Response], None]) -> httpx.Response:
        """GET ``url`` with retries; ``check`` raises :class:`_Transient` for a bad body."""
        if self.offline:
            raise NotFound(
                f"not in the Allen cache {self.cache_dir}: {url}",
                hint="fetch it first with `ishwh ingest allen --cache-dir DIR` on a machine "
                     "with network, then copy DIR here",
            )
        host = urlsplit(url).netloc
        attempt = 0

        def once() -> httpx.Response:
            nonlocal attempt
            attempt += 1
            if attempt > 1:
                self.stats.add(retries=1)
            with self._slots:
                self.stats.add(requests=1)
                try:
                    resp = self._http.get(url)
                except httpx.TimeoutException as exc:
                    raise _Transient(f"timed out ({type(exc).__name__})") from exc
                except httpx.TransportError as exc:
                    raise _Transient(f"{type(exc).__name__}: {exc}") from exc
            if resp.status_code >= 500 or resp.status_code == 429:
                raise _Transient(f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise NetworkError(f"{host} answered HTTP {resp.status_code} for {url}")
            expected = resp.headers.get("content-length")
            if expected is not None and expected.isdigit() and int(expected) != len(resp.content):
                raise _Transient(
                    f"download truncated: got {len(resp.content)} of {expected} bytes"
                )
            check(resp)
            self.stats.add(bytes_downloaded=len(resp.content))
            return resp

        retrying = Retrying(
            stop=stop_after_attempt(self.retries),
            wait=wait_exponential(multiplier=self.backoff_s, max=60),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            return retrying(once)
        except _Transient as exc:
            if isinstance(exc.__cause__, httpx.ConnectError):
                raise Unreachable(
                    f"cannot reach {host} ({exc}) after {self.retries} attempt(s)",
                    hint="check the network connection, or build offline with --from-cache DIR",
                ) from exc
            raise NetworkError(
                f"{host} kept failing for {url}: {exc} (after {self.retries} attempt(s))",
                hint="try again later; everything fetched so far is cached",
            ) from exc

    # -- JSON
    def get_json(self, url: str) -> dict[str, Any]:
        """A JSON API response (``success`` checked), from the cache when present."""
        path = self._json_path(url)
        if path.exists():
            try:
                obj = json.loads(path.read_bytes())
                self.stats.add(cache_hits=1)
                return obj
            except (ValueError, RecursionError) as exc:
                # A damaged entry is not a cache hit. Never deleted: offline it is the
                # user's copy (named in the error); online the fresh answer replaces it.
                if self.offline:
                    raise InvalidInput(
                        f"damaged file in the Allen cache: {path} (not readable JSON: "
                        f"{type(exc).__name__}) for {url}",
                        hint="fetch it again with network (`ishwh ingest allen --cache-dir "
                             "DIR`) or restore the cache folder",
                    ) from None

        def check(resp: httpx.Response) -> None:
            try:
                obj = resp.json()
            except (ValueError, RecursionError) as exc:
                raise _Transient(f"response is not JSON ({exc})") from exc
            if isinstance(obj, dict) and obj.get("success") is False:
                raise _Transient(f"API answered success=false: {str(obj.get('msg'))[:200]}")

        resp = self._fetch(url, check)
        _write_atomic(path, resp.content)
        return resp.json()

    def rma(self, query: Rma, *, page_size: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """Every row of an RMA query, paging until ``total_rows`` rows were read."""
        rows: list[dict[str, Any]] = []
        start = 0
        while True:
            body = self.get_json(query.url(self.base_url, start, page_size))
            msg = body.get("msg")
            if not isinstance(msg, list):
                raise NetworkError(f"unexpected RMA response for {query.model}: msg is not a list")
            total = int(body.get("total_rows", len(msg)))
            rows.extend(msg)
            start += len(msg)
            if start >= total:
                return rows
            if not msg:
                raise NetworkError(
                    f"RMA {query.model} query stopped early: {start} of {total} rows "
                    f"(page at start_row {start} was empty)"
                )

    # -- files
    def _cached_file(self, url: str) -> Path | None:
        """The cached file for ``url`` if its size and sha256 still match the record."""
        meta_path = self._meta_path(url)
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            name = meta["file"]
            # The record may only name a file beside it: a cache is data, not instructions,
            # and must not lead ishwh to read (and ingest) a file anywhere else.
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                why = f"its record names a file outside the cache ({name!r})"
            else:
                path = meta_path.parent / name
                if path.is_symlink():
                    why = f"{name} is a symbolic link (the cache holds files only)"
                elif path.stat().st_size != meta["size"] or _sha256(path) != meta["sha256"]:
                    why = f"{name} does not match its recorded size and sha256"
                else:
                    return path
        except (ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
            why = f"its record cannot be read ({type(exc).__name__})"
        if self.offline:  # offline the cache is all there is: say which entry is damaged
            raise InvalidInput(
                f"damaged entry in the Allen cache: {meta_path}: {why} (for {url})",
                hint="fetch it again with network (`ishwh ingest allen --cache-dir DIR`) or "
                     "restore the cache folder",
            )
        return None

    def download(self, url: str, kind: str = "image") -> Path:
        """Download ``url`` into the cache (``kind`` = 'image' | 'zip' | 'any') and return the
        cached file. Size (Content-Length) and completeness are checked before caching."""
        cached = self._cached_file(url)
        if cached is not None:
            self.stats.add(cache_hits=1)
            return cached
        checker = {"image": check_image, "zip": check_zip}.get(kind)

        def check(resp: httpx.Response) -> None:
            if checker is not None and (why := checker(resp.content)):
                raise _Transient(why)

        resp = self._fetch(url, check)
        data = resp.content
        meta_path = self._meta_path(url)
        name = meta_path.name.replace(".meta.json", sniff_suffix(data))
        digest = hashlib.sha256(data).hexdigest()
        _write_atomic(meta_path.parent / name, data)
        meta = {"url": url, "file": name, "size": len(data), "sha256": digest}
        _write_atomic(meta_path, json.dumps(meta).encode())  # written last: marks completion
        return meta_path.parent / name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
