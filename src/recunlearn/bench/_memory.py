"""How much memory a piece of work adds at its peak, on the device it runs on."""

from __future__ import annotations

from pathlib import Path

import torch

from recunlearn.train.runtime import resolve_device


def rss_mib(field: str = "VmRSS") -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.mib``: on CUDA the peak of allocated GPU memory
    during the block; on CPU how far the process's peak resident memory rose above what it held at
    the start (the kernel's peak is reset first through /proc/self/clear_refs). ``mib`` is None where
    neither can be read (not Linux, or no permission to reset the peak)."""

    def __init__(self, device: str | torch.device | None = None):
        self.device = resolve_device(None if device is None else str(device))
        self.mib: float | None = None
        self._baseline: float | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self._baseline = rss_mib("VmRSS")
        except OSError:
            self._baseline = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._baseline is not None:
            self.mib = max(rss_mib("VmHWM") - self._baseline, 0.0)
