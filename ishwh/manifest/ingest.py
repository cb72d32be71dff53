"""Loading a checked manifest folder: images placed first, then every row in one load
(all or nothing), then the stage references."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ishwh import images, loader, warehouse
from ishwh.errors import ManifestError
from ishwh.manifest.planning import plan
from ishwh.progress import Progress


def ingest_dir(
    db_path: str | os.PathLike, folder: str | os.PathLike, *, link: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Check a manifest folder, then load it all-or-nothing into the warehouse.

    Parameters
    ----------
    db_path:
        An initialised warehouse (held open read-write for the whole ingest, so nothing
        changes between checking and loading).
    folder:
        The manifest folder (see :mod:`ishwh.manifest` and ``docs/manifest.md``).
    link:
        Hard-link (or, across file systems, symlink) the images instead of copying them.
    progress:
        Where to report the image check (:class:`ishwh.progress.Progress`); None: nowhere.

    Returns
    -------
    ``{"folder", "db", "new": {table: n_new_rows}, "rows": {table: n_rows_in_manifest},
    "images_added": n, "nothing_new": bool}``.

    Raises
    ------
    ManifestError
        With every problem (``file:line: reason``); the warehouse is left untouched.
    """
    folder = Path(folder)
    with warehouse.connect(db_path) as con:
        p = plan(con, folder, progress=progress)
        if p.problems:
            raise ManifestError(p.problems, hint="fix the manifest and ingest it again")
        root = warehouse.images_dir(db_path)
        added_images = 0
        # Images first: if loading failed afterwards, unreferenced content-addressed files
        # are harmless; rows pointing to missing files would not be.
        for sha, src in p.images.items():
            if not (root / images.content_relpath(src, sha)).exists():
                images.place_image(src, root, sha, link=link)
                added_images += 1
        new = loader.load(con, loader.Batch(**p.tables))
        if p.references:
            from ishwh.atlas import reference as ref_mod  # noqa: PLC0415

            with warehouse.transaction(con):
                new["reference_atlases"] = sum(
                    ref_mod.store(con, stage, vol, spacing, f"dir:{folder.resolve()}/{name}")
                    for stage, (vol, spacing, name) in p.references.items())
    return {
        "folder": str(folder),
        "db": str(db_path),
        "new": new,
        "rows": {t: tab.num_rows for t, tab in p.tables.items()},
        "images_added": added_images,
        "nothing_new": not any(new.values()) and not added_images,
    }
