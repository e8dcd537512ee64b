"""Where a protection computes: the one device choice of the shells (API keyword ``device``, CLI
``--device``, a Ray worker given GPUs), turned into a ``torch.device`` here and applied to the input image.

The library itself never picks a device: every stage downstream of the input (encoders, LPIPS, targets,
masking maps, attack stand-ins, calibration) runs on the device of the image tensor it is given, and the
models it uses are moved there (``.to(x.device)``, as with any ``nn.Module``). This module is the only
place where a device is *chosen*:

* ``"cpu"`` — the default (also when nothing is said and :data:`DEVICE_ENV` is unset);
* ``"cuda"`` / ``"cuda:N"`` — that GPU; a plain :class:`DeviceUnavailable` when it is not there;
* ``"auto"`` — ``cuda`` when PyTorch sees a GPU, else ``cpu``;
* ``None`` — ``$SFUMATO_DEVICE`` when set (how a server or a Ray worker sets its device for every image it
  protects), else ``cpu``.

torch is imported only when a device is resolved, so importing this module stays light.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

#: Environment variable naming the device when the caller says nothing (a worker's setting).
DEVICE_ENV = "SFUMATO_DEVICE"
#: The device names a user may give.
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_SYNTAX = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceUnavailable(ValueError):
    """The device asked for is not on this machine (or not visible to this process); a one-line reason."""


def parse_device(text: Any) -> str:
    """``text`` checked against :data:`DEVICE_CHOICES` and normalised (lower case, no spaces); a
    ``torch.device`` is accepted as its name. :class:`ValueError` (one line) otherwise."""
    name = str(text).strip().lower()
    if not _SYNTAX.match(name):
        raise ValueError(f"unknown device {str(text)!r}: use {DEVICE_CHOICES} (e.g. --device cuda:0)")
    return name


def resolve_device(device: Any = None) -> torch.device:
    """The ``torch.device`` a protection runs on (see the module docstring). Raises
    :class:`DeviceUnavailable` when a GPU is asked for and PyTorch sees none (or not that one)."""
    import torch

    if device is None:
        device = os.environ.get(DEVICE_ENV) or "cpu"
        where = f"${DEVICE_ENV}={device}"
    else:
        where = f"device {device}"
    name = parse_device(device) if not isinstance(device, torch.device) else str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only PyTorch build" if torch.version.cuda is None else "no NVIDIA driver or GPU visible"
            raise DeviceUnavailable(f"{where}: PyTorch sees no CUDA GPU here ({build}; CUDA_VISIBLE_DEVICES="
                                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceUnavailable(f"{where}: this machine has {count} CUDA GPU(s), numbered 0..{count - 1}")
    elif dev.type != "cpu":
        raise ValueError(f"unknown device {name!r}: use {DEVICE_CHOICES}")
    return dev


def image_on(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """The pipeline's input: an HxWx3 float array as a 1x3xHxW float32 tensor on ``device`` (the one
    copy from the host; everything downstream follows this tensor's device)."""
    from sfumato.io.tensors import to_nchw

    return to_nchw(rgb).to(device)


def work_view_on(rgb: np.ndarray, resolution: int, device: torch.device) -> torch.Tensor:
    """The image as a trainer sees it (long side ``resolution``, channels-last), resized on ``device``."""
    import torch

    from sfumato.io.tensors import resize, work_size

    h, w = rgb.shape[:2]
    return resize(image_on(rgb, device), work_size(h, w, resolution)).contiguous(memory_format=torch.channels_last)


def models_on(encoders: Any, device: torch.device) -> list[Any]:
    """``(encoder, weight)`` pairs with every encoder moved to ``device`` (models follow the input;
    ``nn.Module.to`` moves a module in place, so a process's cached encoders end up where its images are)."""
    return [(e.to(device) if hasattr(e, "to") else e, w) for e, w in encoders]


__all__ = ["DEVICE_CHOICES", "DEVICE_ENV", "DeviceUnavailable", "image_on", "models_on", "parse_device",
           "resolve_device", "work_view_on"]
