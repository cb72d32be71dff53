"""``fit --target pattern|intensity|density``: multi-class structure tasks of one stage.

The flow mirrors the binary runner (:mod:`ishwh.fit.runner`), whose split store and run
bookkeeping it reuses: the SAME stored split as the binary 'detected' runs of the stage (so two
feature sets or two targets are compared on identical test genes), one
:class:`~ishwh.fit.multiclass.BatchedMulticlassLogisticRegression` over every structure, and
all rows written in one transaction.

The rare-class rule (:func:`merge_rare`), per structure, on its training rows:

- fewer than ``min_class`` (3) 'undetected' rows, or fewer than ``min_class`` rows of any
  other class together: the structure is skipped (``run_tasks`` says why);
- otherwise, while a detected class has fewer than ``min_class`` training rows, the rarest one
  is merged into a neighbour: for ordinal grades the nearest grade that is not 'undetected'
  (ties: the larger one), for patterns the most common other detected pattern. The merged
  class keeps the name of the class it joined ('medium' then means medium or high).

Every (structure, annotated class) and where it went is recorded in ``target_classes``; test
rows are scored and judged in the merged classes (``class_predictions.truth``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ishwh import store, warehouse
from ishwh.errors import InvalidInput, NotFound
from ishwh.fit import run_store, runner, split_store
from ishwh.fit import tasks as tasks_mod
from ishwh.fit.multiclass import FIT_TOL, MODELS, BatchedMulticlassLogisticRegression
from ishwh.fit.trainer import DEFAULT_CS
from ishwh.progress import Progress, or_silent, phase
from ishwh.query import query_text
from ishwh.vocab import GRADES, PATTERNS, TARGETS

MIN_CLASS = 3
MULTICLASS_TARGETS = tuple(t for t in TARGETS if t != "detected")


def classes_of(target: str) -> tuple[str, ...]:
    """The annotated classes of a multi-class target, 'undetected' first."""
    return PATTERNS if target == "pattern" else GRADES


def default_model(target: str) -> str:
    """Nominal pattern: multinomial; ordered grades: the ordinal (cumulative logit) model."""
    return "multinomial" if target == "pattern" else "ordinal"


def check_target(target: str, model: str | None) -> str:
    """Validate ``target`` and ``model``; return the model to use."""
    if target not in TARGETS:
        raise InvalidInput(f"unknown target {target!r}", hint="choose from " + ", ".join(TARGETS))
    if target == "detected":
        if model not in (None, "binary"):
            raise InvalidInput("the detected target is binary: it takes no multi-class model")
        return "binary"
    model = model or default_model(target)
    if model not in MODELS:
        raise InvalidInput(f"unknown model {model!r}", hint="choose from " + ", ".join(MODELS))
    if model == "ordinal" and target == "pattern":
        raise InvalidInput("pattern is nominal (full / regional / gradient have no order)",
                           hint="use the multinomial model for pattern")
    return model


def merge_rare(counts: np.ndarray, ordinal: bool, min_class: int = MIN_CLASS
               ) -> tuple[np.ndarray | None, str | None]:
    """The rare-class rule for one structure (see the module docstring).

    ``counts`` (K,): training rows per class, class 0 = 'undetected'. Returns ``(mapping,
    None)`` with ``mapping[k]`` the class that ``k`` is learned as, or ``(None, reason)``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts[0] < min_class:
        return None, f"{int(counts[0])} undetected in train (need {min_class})"
    if counts[1:].sum() < min_class:
        return None, f"{int(counts[1:].sum())} detected in train (need {min_class})"
    mapping = np.arange(len(counts))
    size = {k: int(counts[k]) for k in range(1, len(counts))}   # representative -> rows
    while len(size) > 1:
        rare = [k for k, v in size.items() if v < min_class]
        if not rare:
            break
        k = min(rare, key=lambda c: (size[c], c))
        others = [c for c in size if c != k]
        if ordinal:
            into = min(others, key=lambda c: (abs(c - k), -size[c], c))
        else:
            into = min(others, key=lambda c: (-size[c], c))
        mapping[mapping == k] = into
        size[into] += size.pop(k)
    return mapping, None


def class_matrix(con, stage: str, experiment_ids: np.ndarray, target: str,
                 levels: list[int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(structure_ids (T,), levels (T,), codes (n, T))``: the class index of each
    experiment's call (-1 = no call) for every structure with a call of ``target``."""
    tbl = con.sql(query_text("fit_target_labels"), params={"stage": stage}).to_arrow_table()
    names = tbl.column(target).to_pylist()
    keep = np.array([v is not None for v in names], dtype=bool)
    sid = tbl.column("structure_id").to_numpy().astype(np.int64)[keep]
    lvl = tbl.column("level").to_numpy().astype(np.int64)[keep]
    exp = tbl.column("experiment_id").to_numpy().astype(np.int64)[keep]
    index = {c: i for i, c in enumerate(classes_of(target))}
    code = np.array([index[v] for v, k in zip(names, keep, strict=True) if k], dtype=np.int64)
    if levels is not None:
        sel = np.isin(lvl, levels)
        sid, lvl, exp, code = sid[sel], lvl[sel], exp[sel], code[sel]
    keys, col = np.unique(sid, return_inverse=True)
    row = np.searchsorted(experiment_ids, exp)
    ok = row < len(experiment_ids)
    ok[ok] = experiment_ids[row[ok]] == exp[ok]
    codes = np.full((len(experiment_ids), len(keys)), -1, dtype=np.int64)
    codes[row[ok], col[ok]] = code[ok]
    level_of = dict(zip(sid.tolist(), lvl.tolist(), strict=True))
    return keys, np.array([level_of[k] for k in keys.tolist()], dtype=np.int64), codes


def _check_labels(codes: np.ndarray, target: str, stage: str) -> None:
    """One clear line for a target without annotations or with one class only."""
    known = codes[codes >= 0]
    if known.size == 0:
        raise NotFound(f"the warehouse has no {target} annotations at stage {stage}",
                       hint=f"ingest annotations that carry {target} calls, or fit the "
                            "detected target")
    present = np.unique(known)
    if present.size < 2:
        only = classes_of(target)[int(present[0])]
        raise InvalidInput(f"every {target} annotation at stage {stage} is {only!r}: one class, "
                           "nothing to learn", hint="choose another stage or target")


def fit_target(
    db_path,
    features: str,
    stage: str,
    target: str,
    *,
    model: str | None = None,
    levels: str | Sequence[int] | None = None,
    split: str = "stratified",
    repeats: int = 1,
    seed: int = 0,
    force: bool = False,
    progress: Progress | None = None,
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    cv: int = 3,
    select: str = "group",
    device: str = "auto",
    min_class: int = MIN_CLASS,
) -> list[int]:
    """Fit one multi-class model per structure of ``stage`` for ``target``; return run ids."""
    model = check_target(target, model)
    if target == "detected":
        raise InvalidInput("fit_target is for multi-class targets; use fit for detected")
    runner._validate(stage, "structures", split, repeats)
    runner.validate_trainer(C, Cs, cv, select)
    runner.resolve_device(device)
    level_list = runner.parse_levels(levels)
    trainer_params = {"model": model, "C": C,
                      "Cs": None if C is not None else [float(c) for c in Cs], "cv": cv,
                      "select": select, "tol": FIT_TOL, "max_iter": 500}
    run_ids: list[int] = []
    bar = or_silent(progress)
    with warehouse.connect(db_path) as con, phase(bar, f"fit {stage} {target}", repeats,
                                                   "runs") as advance:
        run_store.clean_unfinished(con)
        t0 = time.perf_counter()
        bar.describe(f"fit {stage}: reading {target} labels and features")
        fsid = store.feature_set_id(con, features)
        fs_row = con.execute(
            "select dim, created_at, finished_at from feature_sets where feature_set_id = ?",
            [fsid]).fetchall()[0]
        if fs_row[2] is None:
            raise InvalidInput(f"feature set {features!r} is not finished yet",
                               hint="let featurize complete (it resumes) and fit again")
        exp_ids, gene_ids = tasks_mod.stage_experiments(con, stage)
        if exp_ids.size == 0:
            raise NotFound(f"no experiments at stage {stage}", hint="check `ishwh status`")
        sids, lvls, codes = class_matrix(con, stage, exp_ids, target, level_list)
        _check_labels(codes, target, stage)
        feat_ids, X = store.read_experiment_features(con, features, stage)
        if feat_ids.size == 0:
            raise NotFound(f"feature set {features!r} has no vectors at stage {stage}",
                           hint=f"featurize {stage} first")
        # The split is the binary one of the stage: same genes in test for every target.
        all_struct = tasks_mod.structure_tasks(con, stage, exp_ids)
        all_gene = tasks_mod.gene_tasks(con, stage, exp_ids)
        digest = {"feature_set_id": fsid, "created_at": fs_row[1], "finished_at": fs_row[2],
                  "n_vectors": int(feat_ids.size), "dim": int(fs_row[0])}
        read_s = time.perf_counter() - t0
        for r in range(repeats):
            split_id, subset = split_store.get_or_make_split(
                con, stage, split, seed, r, exp_ids, gene_ids, [all_struct, all_gene])
            fp_src = {"fit_version": run_store.FIT_VERSION, "features": digest, "stage": stage,
                      "split_id": split_id, "target": target, "levels": level_list,
                      "seed": seed, "trainer": trainer_params, "min_class": min_class}
            fp = run_store.fingerprint(fp_src)
            old = run_store.finished_runs(con, fp)
            if old and not force:
                run_ids.append(int(old[-1]))
                advance(1)
                continue
            run_ids.append(_one_run(
                con, bar, fsid=fsid, stage=stage, split_id=split_id, subset=subset,
                feat_ids=feat_ids, X=X, exp_ids=exp_ids, sids=sids, lvls=lvls, codes=codes,
                target=target, model=model, level_list=level_list, seed=seed, repeat=r,
                split=split, fp=fp, trainer_params=trainer_params, device=device,
                min_class=min_class, read_s=read_s, replace=old))
            advance(1)
    return run_ids


def _one_run(con, bar, *, fsid, stage, split_id, subset, feat_ids, X, exp_ids, sids, lvls,
             codes, target, model, level_list, seed, repeat, split, fp, trainer_params,
             device, min_class, read_s, replace) -> int:
    t_start = time.perf_counter()
    names = classes_of(target)
    k_all = len(names)
    side = split_store.side_of(subset, feat_ids)
    tr_x, te_x = np.flatnonzero(side == "train"), np.flatnonzero(side == "test")
    if tr_x.size == 0 or te_x.size == 0:
        raise InvalidInput(f"split {split_id} leaves no training or no test experiments "
                           f"with vectors of this feature set at {stage}")
    stage_row = np.searchsorted(exp_ids, feat_ids)
    c_tr, c_te = codes[stage_row[tr_x]], codes[stage_row[te_x]]
    n_tr = np.stack([(c_tr == k).sum(0) for k in range(k_all)], axis=1)   # (T, K)
    n_te = np.stack([(c_te == k).sum(0) for k in range(k_all)], axis=1)

    kept, reasons, maps = [], {}, {}
    for j in range(len(sids)):
        mapping, why = merge_rare(n_tr[j], model == "ordinal", min_class)
        if mapping is None:
            reasons[j] = why
        else:
            kept.append(j)
            maps[j] = mapping
    kept_arr = np.array(kept, dtype=np.int64)
    # Effective classes of each kept task as ranks 0..K_t-1 (in vocabulary order).
    rank_of, eff_names, n_classes = {}, {}, []
    for j in kept:
        eff = sorted(set(maps[j].tolist()))
        rank_of[j] = {k: eff.index(int(maps[j][k])) for k in range(k_all)}
        eff_names[j] = [names[e] for e in eff]
        n_classes.append(len(eff))

    params = {"split_method": split, "seed": seed, "repeat_index": repeat, "target": target,
              "model": model, "levels": level_list, "trainer": trainer_params,
              "min_class": min_class, "n_train": int(tr_x.size), "n_test": int(te_x.size),
              "n_tasks_fitted": len(kept), "n_tasks_skipped": len(reasons)}
    versions = run_store.versions(device)
    run_id = run_store.start_run(
        con, feature_set_id=fsid, stage=stage, split_id=split_id, tasks="structures",
        levels=runner.levels_text(level_list), label_mode="true", params=params, fp=fp,
        run_versions=versions)
    timings = {"read_s": round(read_s, 4)}
    c_chosen = np.zeros(0)
    prob = None
    if kept:
        bar.describe(f"fit {stage}: fitting {len(kept)} {target} tasks ({model}) on {tr_x.size} "
                 f"experiments (run {run_id})")
        y_tr = np.full((tr_x.size, len(kept)), -1, dtype=np.int64)
        for col, j in enumerate(kept):
            lab = c_tr[:, j] >= 0
            y_tr[lab, col] = [rank_of[j][int(k)] for k in c_tr[lab, j]]
        est = BatchedMulticlassLogisticRegression(
            model=model, C=trainer_params["C"], Cs=trainer_params["Cs"] or DEFAULT_CS,
            cv=trainer_params["cv"], select=trainer_params["select"], device=device,
            random_state=seed)
        t2 = time.perf_counter()
        est.fit(X[tr_x], y_tr, np.array(n_classes), lvls[kept_arr])
        timings["train_s"] = round(time.perf_counter() - t2, 4)
        t3 = time.perf_counter()
        prob = est.predict_proba(X[te_x])
        timings["predict_s"] = round(time.perf_counter() - t3, 4)
        c_chosen = est.C_
        versions["device"] = str(est.device_)

    bar.describe(f"fit {stage}: writing run {run_id}")
    t4 = time.perf_counter()
    tasks_tbl = run_store.task_table(
        run_id, ["structure"] * len(sids), [str(x) for x in sids.tolist()],
        [reasons.get(j) for j in range(len(sids))],
        [float(c_chosen[kept.index(j)]) if j in maps else None for j in range(len(sids))],
        n_tr[:, 1:].sum(1).tolist(), n_tr[:, 0].tolist())
    tc = {"structure_id": [], "class": [], "effective_class": [], "n_train": [], "n_test": []}
    for j in range(len(sids)):
        for k in range(k_all):
            if n_tr[j, k] + n_te[j, k] == 0:
                continue
            tc["structure_id"].append(int(sids[j]))
            tc["class"].append(names[k])
            tc["effective_class"].append(names[int(maps[j][k])] if j in maps else None)
            tc["n_train"].append(int(n_tr[j, k]))
            tc["n_test"].append(int(n_te[j, k]))
    tc_tbl = pa.table({"run_id": pa.array([run_id] * len(tc["class"]), pa.int32()),
                       **{k: pa.array(v) for k, v in tc.items()}})
    pred_tbls = []
    for col, j in enumerate(kept):
        rows = np.flatnonzero(c_te[:, j] >= 0)
        if rows.size == 0:
            continue
        truth = [eff_names[j][rank_of[j][int(k)]] for k in c_te[rows, j]]
        for r_k, cname in enumerate(eff_names[j]):
            pred_tbls.append(pa.table({
                "run_id": pa.array(np.full(rows.size, run_id, dtype=np.int32)),
                "experiment_id": pa.array(feat_ids[te_x[rows]].astype(np.int64)),
                "structure_id": pa.array(np.full(rows.size, sids[j], dtype=np.int64)),
                "class": pa.array([cname] * rows.size, pa.string()),
                "probability": pa.array(prob[rows, col, r_k].astype(np.float64)),
                "truth": pa.array(truth, pa.string())}))
    preds = pa.concat_tables(pred_tbls) if pred_tbls else None

    def write_target(con) -> None:
        con.execute("insert into run_targets values (?, ?, ?, ?)",
                    [run_id, target, model, min_class]).fetchall()

    run_store.finish_run(
        con, run_id, replace=replace, extra=write_target,
        tables=[("run_tasks", tasks_tbl), ("target_classes", tc_tbl),
                ("class_predictions", preds)],
        timings=timings, run_versions=versions, t_write=t4, t_start=t_start, t_before=read_s)
    return run_id
