"""The root Typer app: one sub-app or command per module, errors translated in one place."""

from __future__ import annotations

import sys
import traceback

import typer
from typer.core import TyperGroup

try:  # typer >= 0.26 vendors click as typer._click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as _cx

from ishwh.errors import IshwhError

_DEBUG_FLAG = "--debug"
# Exceptions the command-line layer already knows how to show (usage errors, exits).
_CLI_EXCEPTIONS = (_cx.ClickException, typer.Exit, typer.Abort)


def flag_message(exc: IshwhError) -> str:
    """The error's text, prefixed with the command-line flag of the library parameter it is
    about (``stage`` -> ``--stage: unknown stage 'E12'``)."""
    text = str(exc)
    if exc.param:
        text = f"--{exc.param.replace('_', '-')}: {text}"
    return text


class IshwhGroup(TyperGroup):
    """Root group that turns library errors into one ``Error: ...`` line on stderr.

    ``--debug`` may be given anywhere on the command line; it shows the traceback instead.
    """

    debug = False

    def main(self, args=None, *a, **kw):  # noqa: D102
        args = list(sys.argv[1:] if args is None else args)
        IshwhGroup.debug = _DEBUG_FLAG in args
        args = [x for x in args if x != _DEBUG_FLAG]
        return super().main(args, *a, **kw)

    def invoke(self, ctx):  # noqa: D102
        try:
            return super().invoke(ctx)
        except _CLI_EXCEPTIONS:
            raise
        except IshwhError as exc:
            if IshwhGroup.debug:
                traceback.print_exc()
            raise _cx.ClickException(flag_message(exc)) from exc
        except KeyboardInterrupt:
            raise typer.Abort() from None
        except Exception as exc:  # a bug or an unexpected failure: still one line
            if IshwhGroup.debug:
                traceback.print_exc()
                raise _cx.ClickException(f"{type(exc).__name__}: {exc}") from exc
            raise _cx.ClickException(
                f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)"
            ) from exc


app = typer.Typer(
    cls=IshwhGroup,
    name="ishwh",
    help="ishwh — the ISH warehouse: gene expression in brain structures from ISH images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # errors as one plain line on stderr, not a rich box
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks on errors (may be given anywhere)."
    ),
) -> None:
    """ishwh — the ISH warehouse: gene expression in brain structures from ISH images."""


def _register() -> None:
    # Imported here so each command module stays independent; order = order in --help.
    from . import (  # noqa: PLC0415
        basic,
        demo,
        featurize,
        fit,
        ingest,
        report,
        synth,
    )

    basic.register(app)
    ingest.register(app)
    featurize.register(app)
    fit.register(app)
    report.register(app)
    demo.register(app)
    synth.register(app)


_register()
