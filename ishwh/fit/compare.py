"""The statistics a reviewer asks for, computed once and stored.

- :func:`compare` (``ishwh compare``): for every pair of finished runs on the SAME split
  (same stage, same test genes) and target, with true labels and another feature set or
  model (e.g. CNN vs bag of words, or ordinal vs multinomial), the
  per-structure macro AUC difference (the AUC itself for 'detected' runs, from
  ``target_metrics``), its mean and median, the two-sided Wilcoxon signed-rank test over
  structures (``scipy.stats.wilcoxon``, zero differences dropped as in Wilcoxon's original
  test; the paper compared its methods with this test) and a 95 % percentile bootstrap
  interval of the mean difference, resampling structures; rows in ``run_comparisons``.
- For every run compared (or asked), a 95 % bootstrap interval of its stage mean over
  structures, in ``run_bootstrap``.

Bootstrap draws are seeded (``seed``, and the run ids), so a re-run writes the same numbers.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ishwh import warehouse
from ishwh.errors import InvalidInput, NotFound
from ishwh.query import query_text
from ishwh.store import insert_arrow

METRIC = "macro_auc"


def _boot_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    return values[idx].mean(1)


def paired_stats(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Paired comparison of per-structure values ``a`` and ``b`` (same structures, same order)."""
    from scipy.stats import wilcoxon  # noqa: PLC0415

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    out = {"n_structures": int(d.size), "mean_a": float(np.mean(a)) if d.size else None,
           "mean_b": float(np.mean(b)) if d.size else None,
           "mean_diff": float(d.mean()) if d.size else None,
           "median_diff": float(np.median(d)) if d.size else None,
           "n_a_better": int((d > 0).sum()), "n_ties": int((d == 0).sum()),
           "wilcoxon_stat": None, "p_value": None, "boot_lo": None, "boot_hi": None}
    if (d != 0).any():
        res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        out["wilcoxon_stat"], out["p_value"] = float(res.statistic), float(res.pvalue)
    elif d.size:
        out["p_value"] = 1.0
    if d.size:
        boots = _boot_means(d, n_boot, np.random.default_rng(seed))
        out["boot_lo"], out["boot_hi"] = (float(x) for x in np.percentile(boots, [2.5, 97.5]))
    return out


def _runs(con, runs: Sequence[int] | None) -> list[dict]:
    tbl = con.sql(query_text("compare_runs")).to_arrow_table().to_pylist()
    if runs is None:
        return tbl
    want = {int(r) for r in runs}
    got = [r for r in tbl if r["run_id"] in want]
    missing = sorted(want - {r["run_id"] for r in got})
    if missing:
        raise NotFound(f"no finished run with structure metrics: {missing[0]}",
                       hint="see the runs table (ishwh sql --query report_runs)")
    return got


def _values(con, run_id: int) -> dict[int, float]:
    rows = con.execute(f"select structure_id, {METRIC} from target_metrics "
                       f"where run_id = ? and {METRIC} is not null", [run_id]).fetchall()
    return {int(s): float(v) for s, v in rows}


def compare(
    db_path: str | os.PathLike,
    runs: Sequence[int] | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> list[dict]:
    """Paired comparisons of every comparable pair among ``runs`` (None: all finished runs).

    Two runs are comparable when they share stage, split, target and true labels and differ
    in feature set. Exactly two runs that are not comparable are refused. Returns the
    ``run_comparisons`` rows written (replacing earlier ones of the same pairs).
    """
    if n_boot < 100:
        raise InvalidInput("n_boot must be at least 100")
    with warehouse.connect(db_path) as con:
        info = _runs(con, runs)
        key = {r["run_id"]: (r["stage"], r["split_id"], r["target"]) for r in info}
        how = {r["run_id"]: (r["feature_set"], r["model"]) for r in info}
        pairs = [(a, b) for a, b in itertools.combinations(sorted(key), 2)
                 if key[a] == key[b] and how[a] != how[b]
                 and _by(info, a)["label_mode"] == _by(info, b)["label_mode"] == "true"]
        if runs is not None and len(set(runs)) == 2 and not pairs:
            raise InvalidInput(f"runs {sorted(set(runs))} cannot be paired: they need the same "
                               "stage, split and target, true labels, and another feature set "
                               "or model")
        values = {r: _values(con, r) for r in key}
        rows, boots = [], []
        for a, b in pairs:
            common = sorted(set(values[a]) & set(values[b]))
            va = np.array([values[a][s] for s in common])
            vb = np.array([values[b][s] for s in common])
            st = paired_stats(va, vb, n_boot, seed)
            rows.append({"run_a": a, "run_b": b, "metric": METRIC, **st, "n_boot": n_boot,
                         "seed": seed})
        for r in sorted(key):
            v = np.array(list(values[r].values()))
            lo = hi = None
            if v.size:
                bm = _boot_means(v, n_boot, np.random.default_rng([seed, r]))
                lo, hi = (float(x) for x in np.percentile(bm, [2.5, 97.5]))
            boots.append({"run_id": r, "metric": METRIC, "n_structures": int(v.size),
                          "mean": float(v.mean()) if v.size else None, "boot_lo": lo,
                          "boot_hi": hi, "n_boot": n_boot, "seed": seed})
        with warehouse.transaction(con):
            for row in rows:
                con.execute("delete from run_comparisons where run_a = ? and run_b = ? and "
                            "metric = ?", [row["run_a"], row["run_b"], METRIC]).fetchall()
            con.execute("delete from run_bootstrap where list_contains($ids, run_id)",
                        {"ids": sorted(key)}).fetchall()
            for table, data in (("run_comparisons", rows), ("run_bootstrap", boots)):
                if data:
                    insert_arrow(con, table, pa.Table.from_pylist(data))
    return rows


def _by(info: list[dict], run_id: int) -> dict:
    return next(r for r in info if r["run_id"] == run_id)


__all__ = ["compare", "paired_stats"]
