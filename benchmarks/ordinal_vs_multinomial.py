"""Ordinal vs multinomial on a toy atlas whose grades are ordinal by construction.

240 genes, 30 structures (levels of 6, 10, 14), 48-dim toy features; per structure a noisy
linear score of the features is cut into undetected (60 %) / low / medium / high; C by inner
CV; then `compare` pairs the two intensity runs (Wilcoxon over structures). Prints the stored
comparison. Run: ``.venv/bin/python benchmarks/ordinal_vs_multinomial.py /tmp/toy.duckdb``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from toy_warehouse import make_toy_warehouse  # noqa: E402

from ishwh import store, warehouse  # noqa: E402
from ishwh.fit import fit  # noqa: E402
from ishwh.fit.compare import compare  # noqa: E402
from ishwh.vocab import GRADES, PATTERNS  # noqa: E402


def main(path: Path) -> None:
    for f in path.parent.glob(path.name + "*"):
        f.unlink()
    atlas = make_toy_warehouse(path, n_genes=240, structures_per_level=(6, 10, 14), dim=48,
                               label_noise=0.5, n_gene_tasks=0)
    with warehouse.connect(path) as con:
        ids, x = store.read_experiment_features(con, atlas.feature_set, "E11.5")
        rng = np.random.default_rng(1)
        rows = []
        for s in atlas.structure_ids.tolist():
            eta = x @ rng.standard_normal(x.shape[1]) / np.sqrt(x.shape[1]) + \
                0.6 * rng.standard_normal(len(ids))
            g = np.digitize(eta, np.quantile(eta, [0.6, 0.75, 0.9]))
            pat = np.where(g == 0, 0, 1 + (rng.random(len(ids)) < 0.3) + (x[:, 0] > 0.5))
            rows += [(int(e), s, PATTERNS[min(p, 3)], GRADES[k],
                      GRADES[max(0, k - int(rng.random() < 0.3))])
                     for e, k, p in zip(ids, g.tolist(), pat.tolist(), strict=True)]
        con.execute("delete from annotations")
        con.executemany("insert into annotations values (?, ?, ?, ?, ?)", rows)
    a = fit(path, atlas.feature_set, "E11.5", target="intensity")[0]
    b = fit(path, atlas.feature_set, "E11.5", target="intensity", model="multinomial")[0]
    for r in compare(path, [a, b]):
        print(r)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ordinal_toy.duckdb"))
