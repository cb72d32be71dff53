"""The ishwh command line: a thin Typer layer over the :mod:`ishwh` library."""
