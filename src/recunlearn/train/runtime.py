"""Device, threads and progress bars: chosen once, overridable by environment variables."""

from __future__ import annotations

import os
import sys

import torch

DEVICE_ENV = "RECUNLEARN_DEVICE"
"""'cpu', 'cuda', 'cuda:1', ... overrides the automatic choice (CUDA when present)."""
PROGRESS_ENV = "RECUNLEARN_PROGRESS"
"""'0' hides progress bars, '1' shows them even when stderr is not a terminal."""


def resolve_device(preference: str | None = None) -> torch.device:
    choice = preference or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} requested but CUDA is not available")
    return device


def configure_threads() -> int:
    """Honour ``OMP_NUM_THREADS`` (torch reads it at start-up, but only if set before import)."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value and value.isdigit() and int(value) > 0 and torch.get_num_threads() != int(value):
        torch.set_num_threads(int(value))
    return torch.get_num_threads()


def show_progress() -> bool:
    flag = os.environ.get(PROGRESS_ENV)
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()
