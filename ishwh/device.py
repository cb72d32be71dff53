"""One home for the compute device and torch's CPU threads.

Every command that can use a GPU resolves its ``device`` argument here, before any work starts,
so ``cuda`` on a machine without a GPU is refused at once with one clear line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ishwh.errors import InvalidInput

if TYPE_CHECKING:  # torch is imported lazily: the CLI starts without it
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` (or ``cuda:N``) without a GPU is an
    :class:`InvalidInput` error; anything else is refused by name."""
    import torch  # noqa: PLC0415

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InvalidInput(f"device {device!r} was asked for but no CUDA GPU is available",
                               hint="use device auto or cpu", param="device")
        if device != "cuda" and int(device.split(":", 1)[1]) >= torch.cuda.device_count():
            raise InvalidInput(f"device {device!r}: only {torch.cuda.device_count()} GPU(s)",
                               param="device")
        return torch.device(device)
    raise InvalidInput(f"unknown device {device!r}", hint="use " + ", ".join(DEVICES),
                       param="device")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: leave the setting alone).

    Why: torch's OpenMP threads spin at every barrier, so when they outnumber the free cores
    (decoding workers, or tiny matrix products) work slows down by orders of magnitude.
    """
    import torch  # noqa: PLC0415

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def free_cores(busy: int) -> int:
    """CPU cores left when ``busy`` other processes (e.g. decoding workers) are running."""
    return max(1, (os.cpu_count() or 1) - busy)
