"""`ishwh ingest allen`: the Allen Developing Mouse Brain Atlas (api.brain-map.org)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ishwh.allen.ingest import ingest_allen

from .common import DbOption, JsonOption, console, db_default, err_console, print_json
from .progress import bar


def allen(
    stage: Annotated[
        list[str],
        typer.Option("--stage", "-s", help="Stage to ingest (repeatable): E11.5, E13.5, E15.5, "
                     "E18.5, P4, P14, P28 (P56 allowed)."),
    ],
    genes: Annotated[
        str | None, typer.Option("--genes", help="Only these gene acronyms, comma-separated.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only the first N genes (by acronym).")
    ] = None,
    downsample: Annotated[
        int, typer.Option("--downsample", help="Image downsampling: each step halves both "
                          "sides (4 = about 16 µm per pixel).")
    ] = 4,
    grid: Annotated[
        bool, typer.Option("--grid", help="Also load each experiment's 3-D expression grid.")
    ] = False,
    images: Annotated[
        bool, typer.Option("--images/--no-images", help="Download section images (needed "
                           "for sections and image features).")
    ] = True,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Cache of API responses and downloads "
                                  "(default $ISHWH_ALLEN_CACHE or ~/.cache/ishwh/allen).")
    ] = None,
    from_cache: Annotated[
        Path | None, typer.Option("--from-cache", help="Build offline from this cache folder; "
                                  "no network.")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="At most this many requests at once.")
    ] = 4,
    reference: Annotated[
        bool, typer.Option("--reference", help="Also fetch each stage's reference annotation "
                           "volume and Allen's alignment of each section to it (used by "
                           "featurize --extractor atlas instead of image registration).")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest stages of the Allen Developing Mouse Brain Atlas: ontology, genes, experiments,
    section images, expert annotations and (with --grid) expression grids. Resumable."""
    gene_list = [g.strip() for g in genes.split(",") if g.strip()] if genes else None
    result = ingest_allen(
        db or db_default(), stage, genes=gene_list, limit=limit, downsample=downsample,
        grid=grid, images=images, cache_dir=cache_dir, from_cache=from_cache,
        concurrency=concurrency, progress=bar(not as_json), reference=reference,
    )
    if as_json:
        print_json(result)
        return
    console.print(
        f"[bold]Allen {', '.join(result['stages'])}[/]: {result['structures']:,} structures, "
        f"{result['genes']:,} genes, {result['experiments']:,} experiments"
    )
    new = result["new_rows"]
    console.print("new rows: " + ", ".join(f"{k} {v:,}" for k, v in new.items()),
                  soft_wrap=True)
    unknown = result["unknown_structures"]
    if unknown["count"]:
        err_console.print(
            f"[yellow]{unknown['annotations']:,} annotation(s) on {unknown['count']} structure(s) "
            f"not in the ontology were skipped[/] (e.g. {unknown['examples'][:5]})",
            soft_wrap=True,
        )
    if result.get("missing_genes"):
        err_console.print(f"[yellow]genes without experiments:[/] {result['missing_genes']}")
    fails = result["failures"]
    if fails["count"]:
        err_console.print(f"[red]{fails['count']} part(s) failed[/] (rerun to retry): "
                          + "; ".join(fails["examples"][:3]))
    for st, ref in (result.get("reference") or {}).items():
        al = ref["alignments"]
        console.print(f"reference {st}: {' x '.join(map(str, ref['shape']))} voxels; Allen "
                      f"alignments: {al['ok']:,} of {al['sections']:,} section(s) placed",
                      soft_wrap=True)
        if al["problems"]:
            err_console.print(f"[yellow]{len(al['problems'])} section(s) without an Allen "
                              f"alignment[/] (e.g. {al['problems'][0]})", soft_wrap=True)
    net = result["network"]
    err_console.print(f"{net['requests']:,} request(s), {net['cache_hits']:,} cache hit(s), "
                      f"{net['bytes_downloaded'] / 1e6:.1f} MB in {result['elapsed_s']} s")


def register(app: typer.Typer) -> None:
    app.command("allen")(allen)
