"""ishwh — the ISH warehouse.

Turns in situ hybridization section images (the Allen Developing Mouse Brain Atlas, or any
lab's) into measurable, per-structure gene-expression annotations, following Zeng et al.,
BMC Bioinformatics 16:147 (2015). Everything lives in one DuckDB file.
"""

__version__ = "0.1.0"

from ishwh.errors import IshwhError  # noqa: E402

__all__ = ["IshwhError", "__version__"]
