"""Device, threads and progress bars: chosen once, overridable by environment variables."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

from recunlearn.errors import ConfigError

DEVICE_ENV = "RECUNLEARN_DEVICE"
"""'cpu', 'cuda', 'cuda:1', ... overrides the automatic choice (CUDA when present)."""
PROGRESS_ENV = "RECUNLEARN_PROGRESS"
"""'0' hides progress bars, '1' shows them even when stderr is not a terminal."""
RETAIN_MEMORY_ENV = "RECUNLEARN_RETAIN_MEMORY"
"""'0' leaves the C allocator as it is (see :func:`retain_freed_memory`)."""

# glibc's mallopt parameters and the values set: 32 MiB is the largest value glibc's own dynamic
# mmap threshold reaches on 64-bit; freed memory up to 256 MiB stays at the top of the heap
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 256 << 20
_allocator = {"retain_freed_memory": False}


def resolve_device(preference: str | None = None) -> torch.device:
    """The device asked for (or ``$RECUNLEARN_DEVICE``), else CUDA where there is one, else the CPU;
    a device this machine lacks or torch does not know is a :class:`ConfigError`."""
    choice = (
        preference or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    )
    try:
        device = torch.device(choice)
    except RuntimeError as exc:
        raise ConfigError(f"device {choice!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {choice!r} requested but CUDA is not available")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ConfigError(
            f"device {choice!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type not in ("cpu", "cuda"):
        try:  # mps, xpu, ...: whether this build and machine have one
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise ConfigError(
                f"device {choice!r} is not available here ({str(exc).splitlines()[0]})"
            ) from None
    return device


_threads = {"configured": False}


def configure_threads() -> int:
    """Honour ``OMP_NUM_THREADS`` (torch reads it at start-up, but only if set before import), once per
    process: a later call leaves a thread count set since alone (the process executor trains a lone
    shard on one thread, as its workers do, for the same floats)."""
    if not _threads["configured"]:
        _threads["configured"] = True
        value = os.environ.get("OMP_NUM_THREADS")
        if value and value.isdigit() and int(value) > 0 and torch.get_num_threads() != int(value):
            torch.set_num_threads(int(value))
    return torch.get_num_threads()


def show_progress() -> bool:
    flag = os.environ.get(PROGRESS_ENV)
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def retain_freed_memory() -> bool:
    """Have the C allocator (glibc) keep freed memory in the process rather than return it to the OS.

    By default glibc serves a block above its (adaptive) mmap threshold by a fresh mapping and
    unmaps it on free, and trims the heap's free top, so the next array of megabytes page-faults
    its memory in again. Influence methods allocate many such short-lived arrays per ``forget``
    (Hessian blocks, index maps), where this refaulting is a visible share of the call on small
    datasets (docs/ifru.md measures it). Applications call this once at start: the CLI (so every
    ``recunlearn bench`` run and the service) and the benchmark scripts; importing the library
    does not. The process then keeps up to its peak heap. Returns whether it took effect (glibc
    only; ``RECUNLEARN_RETAIN_MEMORY=0`` turns it off); :func:`allocator_settings` reports it.
    """
    if os.environ.get(RETAIN_MEMORY_ENV, "1") in (
        "0",
        "false",
        "no",
    ) or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(
            None
        ).mallopt  # the process's own symbols: libc's, without a library search
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    _allocator["retain_freed_memory"] = _allocator["retain_freed_memory"] or done
    return done


def allocator_settings() -> dict[str, bool]:
    """What :func:`retain_freed_memory` did in this process (benchmarks record it with their results)."""
    return dict(_allocator)
