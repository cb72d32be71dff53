"""`ishwh featurize`: CNN transfer features, dense-SIFT bag of words, or expression grids."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DbOption, JsonOption, console, db_default, err_console, print_json
from .engine import AddressOption, EngineOption, ray_options
from .progress import bar


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()] or None


def _sift_option(sift: str, extractor: str) -> dict | None:
    if sift not in ("auto", "opencv", "torch"):
        raise typer.BadParameter("--sift must be auto, opencv or torch")
    if sift == "auto":
        return None
    if extractor != "bow":
        raise typer.BadParameter("--sift applies to --extractor bow only")
    return {"sift": sift}


def _bow_options(extractor: str, sift: str, words: int | None, step: int | None) -> dict | None:
    """--sift/--words/--step as the library's ``bow`` parameters (bag of words only)."""
    from ishwh.errors import InvalidInput  # noqa: PLC0415

    out = _sift_option(sift, extractor) or {}
    for flag, key, v, low in (("--words", "n_words", words, 2), ("--step", "step", step, 1)):
        if v is None:
            continue
        if extractor != "bow":
            raise InvalidInput(f"{flag} applies to --extractor bow only")
        if v < low:
            raise InvalidInput(f"{flag} must be at least {low}, got {v}")
        out[key] = v
    return out or None


def _atlas_options(extractor: str, what: str | None) -> dict | None:
    if what is None:
        return None
    if extractor != "atlas":
        raise typer.BadParameter("--what applies to --extractor atlas only")
    return {"what": _split(what) or []}


def featurize(
    extractor: Annotated[
        str, typer.Option("--extractor", "-e", help="cnn, bow, grid or atlas (structure "
                          "features: registers sections to the stage's reference).")
    ] = "cnn",
    layers: Annotated[
        str | None,
        typer.Option("--layers", help="CNN layers (module names), comma-separated, e.g. "
                     "blocks.2,blocks.3,conv_head. Default: blocks.5."),
    ] = None,
    pool: Annotated[
        str, typer.Option("--pool", help="Pooling over an experiment's sections: max, mean "
                          "or max,mean (one feature set each).")
    ] = "max",
    stage: Annotated[
        str | None, typer.Option("--stage", help="Only these stages (comma-separated).")
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu or cuda. For bow, cuda (or auto with a "
                          "GPU) computes dense SIFT with torch on the GPU, else OpenCV; an "
                          "existing bow set keeps the SIFT it was made with.")
    ] = "auto",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per forward pass "
                                 "(default 4 on CPU, 128 on CUDA).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Image-decoding processes (0 = none; "
                                 "default: a quarter of the CPU cores, 1 to 8).")
    ] = None,
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Weights file of the backbone (default: "
                                  "the bundled efficientnet_lite0 ImageNet weights).")
    ] = None,
    backbone: Annotated[
        str, typer.Option("--backbone", help="timm or torchvision model name.")
    ] = "efficientnet_lite0",
    image_size: Annotated[
        int, typer.Option("--image-size", help="Network input side in pixels.")
    ] = 231,
    spatial: Annotated[
        int | None, typer.Option("--spatial", help="Average each feature map to an NxN grid "
                                 "first (bounds the size; default: the full map).")
    ] = None,
    sift: Annotated[
        str, typer.Option("--sift", help="bow: dense SIFT by opencv (CPU), torch (GPU or "
                          "CPU; the same words, about 12x faster than OpenCV on large CPU "
                          "images) or auto (torch on a GPU, else OpenCV; an existing set keeps "
                          "its own).")
    ] = "auto",
    words: Annotated[
        int | None, typer.Option("--words", help="bow: words per codebook (default 500; "
                                 "another number makes set bow.w<N>). A stage with fewer "
                                 "non-zero SIFT descriptors than words is skipped and named.")
    ] = None,
    step: Annotated[
        int | None, typer.Option("--step", help="bow: dense SIFT grid spacing in pixels of "
                                 "the image read at 1/4 size (default 16; another makes "
                                 ".s<S>). Smaller = more descriptors per section.")
    ] = None,
    on_error: Annotated[
        str, typer.Option("--on-error", help="On an unreadable image: fail (stop; chunks "
                          "already written are kept) or skip (report it and go on).")
    ] = "fail",
    engine: EngineOption = "local",
    address: AddressOption = None,
    ray_workers: Annotated[
        int | None, typer.Option("--ray-workers", help="ray: extractor actors, each holding "
                                 "its extractor (network, codebooks; default 1).")
    ] = None,
    cpus_per_worker: Annotated[
        float | None, typer.Option("--cpus-per-worker", help="ray: CPUs reserved per actor, "
                                   "fractional (default 0.5; decoding tasks use the rest).")
    ] = None,
    gpus_per_worker: Annotated[
        float | None, typer.Option("--gpus-per-worker", help="ray: GPUs per actor, fractional "
                                   "(default 1 on a cluster with GPUs, else 0).")
    ] = None,
    images: Annotated[
        str | None, typer.Option("--images", help="ray: where the workers read the images: a "
                                 "folder or URL (file://, s3://, gs://, hdfs://) holding the "
                                 "warehouse's relative image paths (default: its image "
                                 "folder).")
    ] = None,
    what: Annotated[
        str | None, typer.Option("--what", help="atlas: stain (set atlas.stain, the default) "
                                 "and/or cnn (set atlas.cnn: the backbone's blocks.3 map pooled "
                                 "inside each structure; --layers picks another layer), "
                                 "comma-separated, e.g. stain,cnn.")
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compute feature sets for the warehouse's experiments (resumable; re-runs skip work).

    CNN sets are named <backbone>.<layer>.<pool> (e.g. efficientnet_lite0.blocks.3.max),
    the bag of words set is "bow" (10,521 dims), the grid set "grid".
    """
    from ishwh.features import featurize  # noqa: PLC0415 - torch loads slowly

    ray = ray_options(engine, address=address, workers=ray_workers,
                      cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                      images=images)
    result = featurize(
        db or db_default(), extractor=extractor, layers=_split(layers), pools=_split(pool) or [],
        stages=_split(stage), device=device, batch_size=batch_size, workers=workers,
        weights=weights, image_size=image_size, on_error=on_error, progress=bar(not no_progress),
        backbone=backbone, spatial=spatial, bow=_bow_options(extractor, sift, words, step),
        engine=engine, ray=ray, atlas=_atlas_options(extractor, what),
    )
    if as_json:
        out = {"names": result.names, "written": result.written,
               "finished": result.finished, "problems": result.problems,
               "skipped_stages": result.skipped}
        if result.partitions:
            out["partitions"] = result.partitions
        print_json(out)
        return
    if result.partitions:
        pt = result.partitions
        err_console.print(f"ray: {pt['computed']} partition(s) computed, {pt['reused']} reused "
                          "from an interrupted run", soft_wrap=True)
    for name in result.names:
        n = result.written.get(name, 0)
        state = "finished" if name in result.finished else "not finished"
        console.print(f"{name}: {n:,} new experiment vector(s), {state}", soft_wrap=True)
    for st, why in result.skipped.items():
        console.print(f"  stage {st} skipped (no vectors; fit refuses it): {why} -- fewer "
                      "--words or a smaller --step make a set that covers it",
                      soft_wrap=True, markup=False, highlight=False)
    if result.problems:
        # With a progress bar, each problem was already shown when it happened.
        err_console.print(f"[yellow]{len(result.problems)} problem(s)[/]", soft_wrap=True)
        for p in result.problems if no_progress else []:
            err_console.print(f"  {p}", soft_wrap=True, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(featurize)
