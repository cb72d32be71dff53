"""`--engine local|ray` and `--address`: the options `featurize` and `annotate` share."""

from __future__ import annotations

from typing import Annotated

import typer

EngineOption = Annotated[
    str, typer.Option("--engine", help="local (this machine) or ray (a Ray cluster; needs the "
                      "ray extra: pip install 'ishwh[ray]'). Same results.")
]

AddressOption = Annotated[
    str | None, typer.Option("--address", help="ray: the cluster: auto (started here with "
                             "`ray start`), ray://host:port (Ray Client) or host:port; default: "
                             "a private local cluster for this run.")
]

# flag of each Ray option (library name -> command-line flag)
FLAGS = {"address": "--address", "workers": "--ray-workers",
         "cpus_per_worker": "--cpus-per-worker", "gpus_per_worker": "--gpus-per-worker",
         "images": "--images"}


def ray_options(engine: str, **given: object) -> dict | None:
    """The Ray options given on the command line (``None`` for the local engine, which
    takes none of them)."""
    if engine not in ("local", "ray"):
        raise typer.BadParameter("--engine must be local or ray")
    given = {k: v for k, v in given.items() if v is not None}
    if engine == "local":
        if given:
            raise typer.BadParameter(f"{FLAGS[next(iter(given))]} applies to --engine ray only")
        return None
    return given
