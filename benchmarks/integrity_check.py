"""How long the warehouse integrity check (ishwh/integrity.py) takes on a ~1 GB DuckDB file.

    python benchmarks/integrity_check.py [FOLDER]

Builds FOLDER/big.duckdb once (250,000 rows x 1,000 floats, ~1 GB; kept for reruns) and
times ``check_file`` on it (the full check: every block's checksum).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import duckdb

from ishwh.integrity import check_file


def main(folder: str = ".") -> None:
    path = Path(folder) / "big.duckdb"
    if not path.exists():
        with duckdb.connect(str(path)) as con:
            con.execute("create table t as select i, [random()::float for x in range(1000)] "
                        "as v from range(250000) r(i)")
    size = os.path.getsize(path)
    t = time.perf_counter()
    check_file(path, full=True)
    dt = time.perf_counter() - t
    print(f"{size / 1e9:.2f} GB checked in {dt:.2f} s ({size / 1e9 / dt:.2f} GB/s)")


if __name__ == "__main__":
    main(*sys.argv[1:])
