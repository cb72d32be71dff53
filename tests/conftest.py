"""Shared fixtures: real DuckDB files in temp folders, the shared Allen data, no network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ishwh import warehouse

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ALLEN_DATA = SHARED_DATA / "allen"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any test that opens an internet socket fails: ishwh never calls the network in tests."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise RuntimeError(f"test tried to open a network connection to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def db_path(tmp_path) -> Path:
    """A fresh, initialised warehouse file."""
    path = tmp_path / "wh.duckdb"
    warehouse.init(path)
    return path


@pytest.fixture
def allen_data() -> Path:
    """``../shared/data/allen`` (real Allen files; read, never copied into the repo)."""
    if not ALLEN_DATA.is_dir():
        pytest.skip("shared Allen data not present beside the repository")
    return ALLEN_DATA
