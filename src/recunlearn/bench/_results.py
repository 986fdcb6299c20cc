"""One results-file format for every benchmark, so `recunlearn report` can read any of them.

A results file is JSON with the rows a protocol measured and everything needed to reproduce and judge
them: the command line, the configuration, the seeds, package versions and the hardware.

Writing (from a protocol)::

    from recunlearn.bench._results import write_results

    write_results("runs/ifru/ml100k-cpu.json", rows, config=config.model_dump(mode="json"),
                  protocol="ifru", markdown=markdown_table(rows))

``rows`` is a list of flat-ish dicts, one per measured unit (a method, a method at K shards, a size of
the scaling study); keep numbers as numbers. Conventional keys the report understands when present:
``method``, ``n_shards``, ``auc``, ``recall@K``, ``ndcg@K``, ``fit_seconds``, ``forget_seconds``,
``speedup``, ``dist_removed``, ``dist_test`` (completeness: score distance to retraining),
``n_interactions``, ``peak_memory_mb``. Anything else is kept and shown in the tables.

Seeds default to every key ending in ``seed`` found in the configuration (``{"data.seed": 1024}``),
and every list of integers under a key ending in ``seeds`` (``{"seeds": [0, 1, 2]}``).
Reading: :func:`load_results` accepts this format and the older documents of `bench exact`,
`bench ifru`, `bench apa` and `recunlearn run` (``config``, ``rows``, ``environment``, ``command`` at
the top level).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recunlearn.errors import RecUnlearnError, validation_problems

SCHEMA = "recunlearn.results/1"

PACKAGES = (
    "recunlearn",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "pydantic",
    "matplotlib",
    "ray",
    "transformers",
    "peft",
)
"""Packages whose versions every results file records (those not installed are recorded as None)."""


class ResultsFile(BaseModel):
    """A benchmark's results and the context that produced them."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")
    schema_version: str = SCHEMA
    """Format tag, so readers can tell this format from older documents."""
    protocol: str
    """Which benchmark wrote it ('exact', 'ifru', 'apa', 'scaling', 'executors', ...)."""
    command: str
    """The command line that produced it, to rerun it."""
    config: dict[str, Any] = Field(default_factory=dict)
    """The protocol's full configuration (defaults included), as JSON."""
    seeds: dict[str, int | list[int]] = Field(default_factory=dict)
    """Every seed that determines the results, by dotted config path (a list where the protocol
    repeats its runs over several seeds)."""
    environment: dict[str, Any] = Field(default_factory=dict)
    """Source commit, package versions and hardware (see :func:`environment`)."""
    rows: list[dict[str, Any]] = Field(default_factory=list)
    """One dict per measured unit; see the module docstring for the keys the report understands."""
    summary: dict[str, Any] = Field(default_factory=dict)
    """Protocol-level facts that are not rows (data description, deletion-set sizes, fitted slopes)."""
    created: str = Field(default_factory=lambda: _iso(datetime.now(timezone.utc)))
    """When the file was written (UTC), to tell runs apart."""
    created_from: Literal["recorded", "file modification time"] = Field("recorded", exclude=True)
    """Where ``created`` comes from when a file is read: the file itself, or, for an older document
    that records none, the file's modification time (never written: it describes the reading)."""
    seconds: float | None = None
    """Wall time of the whole run."""

    def write(self, path: str | Path, markdown: str | None = None) -> Path:
        """Write the JSON (and ``markdown`` into a .md file beside it when given)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(self.model_dump(mode="json"), indent=1, allow_nan=True, default=_plain)
            + "\n"
        )
        if markdown is not None:
            path.with_suffix(".md").write_text(markdown.rstrip() + "\n")
        return path


def make_results(
    rows: list[dict[str, Any]],
    config: dict[str, Any] | BaseModel | None = None,
    command: str | None = None,
    *,
    protocol: str = "benchmark",
    seeds: dict[str, int] | None = None,
    summary: dict[str, Any] | None = None,
    seconds: float | None = None,
) -> ResultsFile:
    """``rows`` with their context (this machine's environment); ``command`` defaults to this process's
    command line, ``seeds`` to the seeds found in ``config``."""
    if isinstance(config, BaseModel):
        config = config.model_dump(mode="json")
    config = _plain_tree(config or {})
    return ResultsFile(
        protocol=protocol,
        command=command or command_line(),
        config=config,
        seeds=seeds if seeds is not None else find_seeds(config),
        environment=environment(),
        rows=_plain_tree(rows),
        summary=_plain_tree(summary or {}),
        seconds=seconds,
    )


def write_results(
    path: str | Path,
    rows: list[dict[str, Any]],
    config: dict[str, Any] | BaseModel | None = None,
    command: str | None = None,
    *,
    protocol: str | None = None,
    seeds: dict[str, int] | None = None,
    summary: dict[str, Any] | None = None,
    seconds: float | None = None,
    markdown: str | None = None,
) -> ResultsFile:
    """Record ``rows`` with their context at ``path`` (see :func:`make_results`); returns what was written.

    ``protocol`` defaults to the file's parent folder name.
    """
    results = make_results(
        rows,
        config,
        command,
        protocol=protocol or Path(path).parent.name or "benchmark",
        seeds=seeds,
        summary=summary,
        seconds=seconds,
    )
    results.write(path, markdown)
    return results


def markdown_cell(text: Any) -> str:
    """A table cell's text with its pipes escaped (a header such as '|Δ| test' split the row)."""
    return str(text).replace("|", "\\|")


_NUMBER = re.compile(r"[-+]?(\d[\d,]*(\.\d*)?|\.\d+|nan|inf)", re.IGNORECASE)


def markdown_grid(header: list[str], cells: list[list[str]]) -> str:
    """A markdown table from a header and rows of already formatted cells: columns of figures
    right-aligned (so digits line up), text columns left-aligned."""
    numeric = [
        any(row[i] not in ("", "-") for row in cells)
        and all(row[i] in ("", "-") or _NUMBER.match(row[i]) for row in cells)
        for i in range(len(header))
    ]
    rule = "|" + "".join("---:|" if right else ":---|" for right in numeric)
    lines = ["| " + " | ".join(map(markdown_cell, header)) + " |", rule]
    return "\n".join(lines + ["| " + " | ".join(map(markdown_cell, row)) + " |" for row in cells])


def speedup_text(ratio: float) -> str:
    """'1449x', '12x', '0.33x': whole numbers from 10 up, two significant figures below."""
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def load_results(path: str | Path) -> ResultsFile:
    """Read a results file (this format, or an older document with config/rows at the top level).

    A document without ``created`` is dated by the file's modification time, and says so
    (``created_from``), rather than passing for one written now."""
    path = Path(path)
    if not path.is_file():
        raise RecUnlearnError(f"no such results file: {path}")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RecUnlearnError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("rows"), list):
        raise RecUnlearnError(f"{path}: not a results file (needs a top-level 'rows' list)")
    if isinstance(document.get("created"), str):
        created = {"created": document["created"]}
    else:  # an older document: the file's date, not the time it is read
        created = {
            "created": _iso(datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)),
            "created_from": "file modification time",
        }
    try:
        if document.get("schema_version") == SCHEMA:
            return ResultsFile.model_validate({**document, **created})
        known = {"command", "config", "rows", "environment", "seconds", "created"}
        config = document.get("config") or {}
        command = document.get("command") or "(not recorded)"
        return ResultsFile(
            protocol=document.get("protocol") or path.parent.name or "benchmark",
            command=command
            if isinstance(command, str)
            else json.dumps(command),  # a script's arguments
            config=config,
            seeds=find_seeds(config),
            environment=document.get("environment") or {},
            rows=document["rows"],
            seconds=document.get("seconds"),
            summary={k: v for k, v in document.items() if k not in known},
            **created,
        )
    except ValidationError as exc:
        raise RecUnlearnError(f"{path}: not a results file ({validation_problems(exc)})") from None


def command_line() -> str:
    """This process's command as a user would type it (``recunlearn ...`` rather than a script path)."""
    argv = list(sys.argv) or ["python"]
    argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def find_seeds(config: Any, prefix: str = "") -> dict[str, int | list[int]]:
    """Every integer under a key ending in 'seed', and every list of integers under a key ending in
    'seeds' (a protocol repeated over seeds, like IFRU's), by dotted path."""
    seeds: dict[str, int | list[int]] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            path = f"{prefix}{key}"
            if str(key).endswith("seed") and _is_int(value):
                seeds[path] = value
            elif (
                str(key).endswith("seeds")
                and isinstance(value, list)
                and value
                and all(map(_is_int, value))
            ):
                seeds[path] = value
            else:
                seeds.update(find_seeds(value, path + "."))
    elif isinstance(config, list):
        for index, value in enumerate(config):
            seeds.update(find_seeds(value, f"{prefix}{index}."))
    return seeds


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def environment() -> dict[str, Any]:
    """The source commit, versions of the packages that shape results, and the hardware they ran on."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"commit": source_commit(), "versions": versions, "hardware": hardware()}


@functools.cache
def source_commit() -> str | None:
    """The git commit of the package's source tree, with '+changes' if it has uncommitted changes
    (None outside a git checkout, e.g. an installed wheel): results say which code produced them.
    Read once per process, when this module is imported (every benchmark, command or script that
    writes results imports it before it starts), so a file edited while a long benchmark runs does
    not change what its results claim."""
    here = Path(__file__).resolve()
    root = here.parents[3]
    if (
        root / "src" / "recunlearn" / "bench" / here.name != here
    ):  # not a source checkout's src/ layout
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if dirty else "")


source_commit()  # the code that runs is the code imported now


def hardware() -> dict[str, Any]:
    """CPU model and count, memory, GPU (if torch sees one), torch threads, and the load at the time."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": _memory_gb(),
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else []
        )
    info["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    runtime = sys.modules.get(
        "recunlearn.train.runtime"
    )  # loaded with torch by anything that trained
    if runtime is not None:
        info.update(runtime.allocator_settings())
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars and arrays, paths and the like."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _plain_tree(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=True, default=_plain))
