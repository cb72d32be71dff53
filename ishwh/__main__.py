"""Console entry point: ``ishwh`` (and ``python -m ishwh``)."""

from __future__ import annotations


def _load_app():
    try:  # installed wheel: cli/ ships inside the package
        from ishwh.cli.app import app
    except ModuleNotFoundError as exc:  # source checkout: cli/ beside ishwh/
        if exc.name not in ("ishwh.cli", "ishwh.cli.app"):
            raise
        from cli.app import app
    return app


def main() -> None:
    _load_app()(prog_name="ishwh")


if __name__ == "__main__":
    main()
