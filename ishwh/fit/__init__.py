"""Learning and evaluation: balanced splits, one L2 logistic regression per task, predictions.

``fit`` (the runner) moves data between the warehouse and the trainer; ``trainer`` and
``splits`` know nothing about DuckDB.
"""

from ishwh.fit.runner import fit
from ishwh.fit.trainer import DEFAULT_CS, BatchedLogisticRegression

__all__ = ["DEFAULT_CS", "BatchedLogisticRegression", "fit"]
