"""`ishwh ingest dir|synthetic|allen`: one module per source registers its command here."""

from __future__ import annotations

import typer

ingest_app = typer.Typer(
    help="Fill a warehouse from a source: a manifest folder, the synthetic atlas or the Allen API.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    from . import ingest_allen, ingest_dir, ingest_reference, ingest_synthetic  # noqa: PLC0415

    ingest_dir.register(ingest_app)
    ingest_synthetic.register(ingest_app)
    ingest_allen.register(ingest_app)
    ingest_reference.register(ingest_app)
    app.add_typer(ingest_app, name="ingest")
