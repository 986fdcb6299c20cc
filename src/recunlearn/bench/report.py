"""Reports researchers can read: one HTML page (plots embedded, so the file travels alone) and a
markdown twin (plots as PNG files beside it), from one or more results files.

Each results file becomes a section with the plots its rows support, found by key:
utility vs unlearning time per method (``auc`` / ``recall@K`` against ``forget_seconds`` or a
``*request_seconds`` / ``*batch_seconds`` key), speed-up bars (keys containing ``speedup``),
completeness bars (``dist_*``: score distance to retraining, lower is closer), and scaling curves
(``n_interactions`` against ``*_seconds`` and ``peak_memory_mb``, log-log, with fitted slopes).
Rows with a column set per method instead of a ``method`` (`bench ifru-scaling`) are plotted as one
row per method (see :func:`measured_rows`); rows that differ only in their seed are one point or bar,
the mean, with whiskers over the seeds' range (see :func:`aggregate_seeds`). Axes and legends name
measures in words (:func:`human`). Figures are written as PNG and SVG. Then the rows as a table,
and what produced them: command, date, commit, configuration, seeds, versions, hardware.
``recunlearn report RESULTS.json`` runs :func:`write_report`.

One module because the HTML and markdown twins share every plot and table builder.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recunlearn.bench._results import PACKAGES, ResultsFile, load_results, markdown_grid

UTILITY_KEYS = ("auc", "test_auc", "recall@20", "ndcg@20")
"""Preferred utility measures, in order; the first other ``recall@K`` / ``ndcg@K`` otherwise."""
TIME_KEYS = ("forget_seconds", "unlearn_seconds", "unlearn_s", "forget_s")
"""Preferred unlearning-time measures; else the first key ending in request_seconds / batch_seconds."""


@dataclass
class Plot:
    """One figure of a section: a slug for file names, a title, the PNG and SVG bytes, and a
    one-line reading."""

    slug: str
    title: str
    png: bytes
    svg: bytes
    caption: str


HUMAN_LABELS = {
    "auc": "AUC",
    "test_auc": "test AUC",
    "forget_seconds": "time to forget (s)",
    "unlearn_seconds": "time to forget (s)",
    "unlearn_s": "time to forget (s)",
    "forget_s": "time to forget (s)",
    "fit_seconds": "time to fit (s)",
    "speedup": "speed-up over retraining",
    "dist_removed": "score distance on the removed rows",
    "dist_test": "score distance on the test rows",
    "n_interactions": "interactions",
    "peak_memory_mb": "peak memory (MB)",
}
"""Words for the measures figures show; others are spelled out by :func:`human`."""


def human(key: str) -> str:
    """How a figure names a measure: 'time to forget (s)' for ``forget_seconds``, 'Recall@20',
    'users: batch time (s)' for ``users.batch_seconds``."""
    if key in HUMAN_LABELS:
        return HUMAN_LABELS[key]
    prefix, _, name = key.rpartition(".")
    ranked = re.fullmatch(r"(recall|ndcg|hr|precision)@(\d+)", name)
    if ranked:
        name = {"recall": "Recall", "precision": "Precision"}.get(ranked[1], ranked[1].upper())
        name += f"@{ranked[2]}"
    else:
        name = HUMAN_LABELS.get(name) or re.sub(r"_(seconds|s)$", " time (s)", name)
        name = re.sub(r"^dist_", "score distance, ", name).replace("speedup", "speed-up")
        name = name.replace("_", " ")
    return f"{prefix.replace('.', ' ')}: {name}" if prefix else name


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested measures become dotted keys ({"users": {"batch_seconds": 1}} -> "users.batch_seconds")."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


DISTINGUISHING_KEYS = ("model", "dataset", "fraction")
"""Row settings named in legends when they differ between rows (e.g. IFRU's runs per model); seeds
are not among them: rows that differ only in their seed are aggregated (:func:`aggregate_seeds`)."""


def label(row: dict[str, Any], varying: tuple[str, ...] = ()) -> str:
    """How a row is named in legends: method (or family), its number of shards when it has one, and the
    ``varying`` settings (a precomputed ``_label`` wins)."""
    if "_label" in row:
        return row["_label"]
    name = str(row.get("method") or row.get("family") or row.get("name") or "?")
    shards = row.get("n_shards")
    parts = [name] + ([f"K={shards}"] if shards not in (None, "", 0) else [])
    parts += [f"{key}={row[key]}" for key in varying if row.get(key) is not None]
    return " ".join(parts)


def measured_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The flattened rows that plots and slopes read. A row without ``method`` that holds a column set
    per method m (``<m>_seconds`` with ``auc_<m>``, and ``<m>_peak_mib``, at ``interactions``: one row
    per size of `bench ifru-scaling`) becomes one row per method in the conventional keys, its
    speed-up over ``retrain`` computed when retraining is among them."""
    measured: list[dict[str, Any]] = []
    for row in map(flatten, rows):
        methods = [
            key.removesuffix("_seconds")
            for key in row
            if key.endswith("_seconds") and f"auc_{key.removesuffix('_seconds')}" in row
        ]
        if "method" in row or not methods:
            measured.append(row)
            continue
        reference = row.get("retrain_seconds")
        for name in methods:
            seconds = row[f"{name}_seconds"]
            measured.append(
                {
                    "method": name,
                    "n_interactions": row.get("interactions"),
                    "auc": row[f"auc_{name}"],
                    "forget_seconds": seconds,
                    "peak_memory_mb": row.get(f"{name}_peak_mib"),
                    "speedup": reference / max(seconds, 1e-9)
                    if _is_number(reference) and _is_number(seconds)
                    else None,
                }
            )
    return measured


def aggregate_seeds(rows: list[dict[str, Any]], varying: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per method and setting (its :func:`label` with ``varying``, and its data size): each
    measure the mean over the rows that differ only in their seed, its lowest and highest value in
    ``_range``, and the number of rows in ``_runs`` (captions say how many)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(label(row, varying), json.dumps(row.get("n_interactions")))].append(row)
    merged = []
    for (name, _), group in groups.items():
        row = {**group[0], "_label": name, "_runs": len(group), "_range": {}}
        if len(group) > 1:
            for key in dict.fromkeys(k for r in group for k in r):
                values = [r[key] for r in group if _is_number(r.get(key))]
                if values and key not in ("seed", "n_interactions", "n_shards", "fraction"):
                    row[key] = float(np.mean(values))
                    row["_range"][key] = (min(values), max(values))
        merged.append(row)
    return merged


def _whiskers(rows: list[dict[str, Any]], key: str, values: list[float]) -> np.ndarray | None:
    """Matplotlib error bars (below, above) from each row's ``_range`` of ``key``; None if none has one."""
    if not any(key in r.get("_range", {}) for r in rows):
        return None
    spans = [r.get("_range", {}).get(key, (v, v)) for r, v in zip(rows, values)]
    below = [v - low for v, (low, _) in zip(values, spans)]
    above = [high - v for v, (_, high) in zip(values, spans)]
    return np.clip(
        np.array([below, above]), 0.0, None
    )  # a mean of equal values may round past them


def _legend(axes, entries: int) -> None:
    """Beside the axes once it would cover them (constrained layout makes room for it there)."""
    if entries > 5:
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    else:
        axes.legend(fontsize=8, loc="best")


def _point_label(row: dict[str, Any]) -> str:
    """A row's name where each row is one point or bar: with its data size when it has one."""
    size = row.get("n_interactions")
    return label(row) + (f" n={size:,}" if _is_number(size) else "")


def _numeric(rows: list[dict[str, Any]], key: str) -> bool:
    values = [r.get(key) for r in rows]
    return any(_is_number(v) for v in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _first_key(
    rows: list[dict[str, Any]], preferred: tuple[str, ...], *patterns: str
) -> str | None:
    """The first preferred key with numbers, else the first key (in row order) matching a pattern, in turn."""
    for key in preferred:
        if _numeric(rows, key):
            return key
    keys = list(dict.fromkeys(k for r in rows for k in r))
    for pattern in patterns:
        for key in keys:
            if re.search(pattern, key) and _numeric(rows, key):
                return key
    return None


def _figure(width: float = 6.4, height: float = 3.8):
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _saved(figure, image_format: str) -> bytes:
    """PNG, or SVG with its text kept as text (searchable, and smaller than glyph outlines) and no
    date, so that the same figure is the same file."""
    from matplotlib import rc_context

    buffer = io.BytesIO()
    if image_format == "svg":
        with rc_context({"svg.fonttype": "none", "svg.hashsalt": "recunlearn"}):
            figure.savefig(buffer, format="svg", metadata={"Date": None})
    else:
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _plot(slug: str, title: str, figure, caption: str) -> Plot:
    return Plot(slug, title, _saved(figure, "png"), _saved(figure, "svg"), caption)


def utility_vs_time(rows: list[dict[str, Any]]) -> Plot | None:
    utility = _first_key(rows, UTILITY_KEYS, r"^(recall|ndcg)@\d+$")
    seconds = _first_key(rows, TIME_KEYS, r"request_seconds$", r"batch_seconds$")
    shown = [r for r in rows if _is_number(r.get(seconds)) and _is_number(r.get(utility))]
    if utility is None or seconds is None or not shown:
        return None
    figure = _figure(8.4 if len(shown) > 5 else 6.4, 3.8)
    axes = figure.add_subplot()
    for index, row in enumerate(shown):
        x, y = max(row[seconds], 1e-4), row[utility]
        axes.errorbar(
            [x],
            [y],
            xerr=_whiskers([row], seconds, [x]),
            yerr=_whiskers([row], utility, [y]),
            fmt="o",
            markersize=8,
            color=f"C{index % 10}",
            label=_point_label(row),
            zorder=3,
        )
    axes.set_xscale("log")
    axes.set_xlabel(f"{human(seconds)}, log scale")
    axes.set_ylabel(human(utility))
    axes.grid(True, alpha=0.3)
    _legend(axes, len(shown))
    best = max(shown, key=lambda r: r[utility])
    return _plot(
        "utility_vs_time",
        f"{human(utility)} against {human(seconds)}",
        figure,
        f"Up and to the left is better; highest {human(utility)}: {_point_label(best)} "
        f"({best[utility]:.4f} in {best[seconds]:.3g} s).{_seeds_note(shown)}",
    )


def _seeds_note(rows: list[dict[str, Any]]) -> str:
    runs = sorted({r.get("_runs", 1) for r in rows})
    if runs[-1] == 1:
        return ""
    count = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]} to {runs[-1]}"
    return f" Each is the mean over {count} seeds, whiskers from the lowest to the highest."


def _grouped_bars(
    axes, bars: list[dict[str, Any]], keys: list[str], first_color: int
) -> np.ndarray:
    """A group of bars per row, one bar per key (a missing value as 0, whiskers over seeds), colours
    from ``C{first_color}``; returns the groups' positions for their labels."""
    width = 0.8 / len(keys)
    positions = np.arange(len(bars))
    for index, key in enumerate(keys):
        values = [r.get(key) if _is_number(r.get(key)) else 0.0 for r in bars]
        axes.bar(
            positions + index * width - 0.4 + width / 2,
            values,
            width,
            yerr=_whiskers(bars, key, values),
            label=human(key),
            color=f"C{(index + first_color) % 10}",
        )
    return positions


def speedup_bars(rows: list[dict[str, Any]]) -> Plot | None:
    keys = sorted({k for r in rows for k in r if "speedup" in k and _numeric(rows, k)})
    bars = [r for r in rows if any(_is_number(r.get(k)) for k in keys)]
    if not keys or not bars:
        return None
    figure = _figure(max(6.4, 0.9 * len(bars) * max(1, len(keys)) / 2), 3.8)
    axes = figure.add_subplot()
    positions = _grouped_bars(axes, bars, keys, first_color=0)
    axes.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    axes.set_xticks(positions, [_point_label(r) for r in bars], rotation=30, ha="right", fontsize=8)
    reference = "retraining" if not any("_vs_" in k for k in keys) else "the reference"
    axes.set_ylabel(f"speed-up over {reference} (x)")
    if max((r.get(k) or 0) for r in bars for k in keys if _is_number(r.get(k))) > 50:
        axes.set_yscale("log")
    axes.legend(fontsize=8)
    axes.grid(True, axis="y", alpha=0.3)
    fastest = max(
        ((_point_label(r), k, r[k]) for r in bars for k in keys if _is_number(r.get(k))),
        key=lambda t: t[2],
    )
    return _plot(
        "speedup",
        f"Speed-up over {reference}",
        figure,
        f"The dashed line is {reference} (1x); largest: {fastest[0]} {fastest[2]:.2f}x "
        f"({human(fastest[1])}).{_seeds_note(bars)}",
    )


def completeness_bars(rows: list[dict[str, Any]]) -> Plot | None:
    keys = sorted(
        {k for r in rows for k in r if re.match(r"^(dist_|completeness)", k) and _numeric(rows, k)}
    )
    bars = [r for r in rows if any(_is_number(r.get(k)) for k in keys)]
    if not keys or not bars:
        return None
    figure = _figure(max(6.4, 0.45 * len(bars)), 4.2)
    axes = figure.add_subplot()
    positions = _grouped_bars(axes, bars, keys, first_color=2)
    axes.set_xticks(positions, [label(r) for r in bars], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("distance to the retrained model")
    axes.legend(fontsize=8)
    axes.grid(True, axis="y", alpha=0.3)
    return _plot(
        "completeness",
        "Completeness: distance to retraining",
        figure,
        "Lower is closer to the model retrained without the removed data (retraining itself is 0)."
        + _seeds_note(bars),
    )


def slopes(rows: list[dict[str, Any]], x: str = "n_interactions") -> dict[str, dict[str, float]]:
    """Log-log least-squares slope of each measure against ``x``, per method: cost ~ n^slope."""
    measures = sorted(
        {
            k
            for r in rows
            for k in r
            if (k.endswith("_seconds") or k == "peak_memory_mb") and _numeric(rows, k)
        }
    )
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if _is_number(row.get(x)):
            by_method[label(row)].append(row)
    fitted: dict[str, dict[str, float]] = {}
    for name, group in by_method.items():
        for key in measures:
            pairs = [
                (r[x], r[key]) for r in group if _is_number(r.get(key)) and r[key] > 0 and r[x] > 0
            ]
            if len({p[0] for p in pairs}) >= 2:
                xs, ys = np.log10([p[0] for p in pairs]), np.log10([p[1] for p in pairs])
                fitted.setdefault(name, {})[key] = round(float(np.polyfit(xs, ys, 1)[0]), 3)
    return fitted


def scaling_curves(rows: list[dict[str, Any]], x: str = "n_interactions") -> Plot | None:
    fitted = slopes(rows, x)
    measures = sorted({k for s in fitted.values() for k in s})
    if not measures:
        return None
    figure = _figure(4.2 * len(measures), 3.8)
    for index, key in enumerate(measures):
        axes = figure.add_subplot(1, len(measures), index + 1)
        for colour, name in enumerate(sorted(fitted)):
            points = sorted(
                (r[x], r[key])
                for r in rows
                if label(r) == name
                and _is_number(r.get(x))
                and _is_number(r.get(key))
                and r[key] > 0
            )
            if key in fitted[name] and points:
                axes.plot(
                    *zip(*points),
                    marker="o",
                    color=f"C{colour % 10}",
                    label=f"{name} (slope {fitted[name][key]:.2f})",
                )
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel(f"{human(x)}, log scale")
        axes.set_ylabel(human(key))
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    return _plot(
        "scaling",
        f"Scaling with the number of {human(x)}",
        figure,
        "Log-log; slope 1 = linear in the data size. Slopes fitted by least squares on all sizes.",
    )


def plots(results: ResultsFile) -> list[Plot]:
    rows = measured_rows(results.rows)
    varying = tuple(k for k in DISTINGUISHING_KEYS if len({json.dumps(r.get(k)) for r in rows}) > 1)
    rows = aggregate_seeds(rows, varying)
    made = [
        utility_vs_time(rows),
        speedup_bars(rows),
        completeness_bars(rows),
        scaling_curves(rows),
    ]
    return [p for p in made if p is not None]


# ------------------------------------------------------------------------------------------- rendering
def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return "-" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header (keys in first-seen order) and formatted cells of the flattened rows."""
    flat = [flatten(r) for r in rows]
    header: list[str] = []
    for row in flat:
        header += [k for k in row if k not in header]
    return header, [[_cell(row.get(k)) for k in header] for row in flat]


def _context(results: ResultsFile) -> dict[str, Any]:
    """Command, date, commit, seeds, versions and hardware; older documents keep versions and machine
    facts in one dict."""
    environment = results.environment
    if "versions" in environment or "hardware" in environment:
        versions, hardware = environment.get("versions") or {}, environment.get("hardware") or {}
    else:
        names = {"python", *PACKAGES}
        versions = {k: v for k, v in environment.items() if k in names}
        hardware = {k: v for k, v in environment.items() if k not in names and k != "commit"}
    created = results.created
    if results.created_from != "recorded":
        created += f" ({results.created_from}: the file records no date)"
    return {
        "command": results.command,
        "created": created,
        "commit": environment.get("commit") or "not recorded",
        "seconds": results.seconds,
        "seeds": results.seeds,
        "versions": {k: v for k, v in versions.items() if v is not None},
        "hardware": hardware,
    }


def _inline(values: dict[str, Any]) -> str:
    return (
        ", ".join(
            f"{k} {v if not isinstance(v, (list, dict)) else json.dumps(v)}"
            for k, v in values.items()
        )
        or "-"
    )


def _section_title(results: ResultsFile, path: str) -> str:
    return f"{results.protocol}: {Path(path).name}"


def render_html(sections: list[tuple[str, ResultsFile, list[Plot]]]) -> str:
    """One self-contained page: plots as data URIs, no scripts, no external resources."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>recunlearn report</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}th{background:#f0f0f0}td:first-child{text-align:left}"
        "figure{display:inline-block;margin:0.5em 1em 1em 0;vertical-align:top}figcaption{font-size:13px;"
        "max-width:640px}pre{background:#f6f6f6;padding:0.5em;overflow-x:auto;font-size:12px}</style>",
        "</head><body>",
        "<h1>recunlearn report</h1>",
    ]
    for path, results, figures in sections:
        parts.append(f"<h2>{e(_section_title(results, path))}</h2>")
        for plot in figures:
            data = base64.b64encode(plot.png).decode()
            parts.append(
                f'<figure><img alt="{e(plot.title)}" src="data:image/png;base64,{data}">'
                f"<figcaption><b>{e(plot.title)}.</b> {e(plot.caption)}</figcaption></figure>"
            )
        header, cells = table(results.rows)
        parts.append(
            '<h3>Results</h3><div style="overflow-x:auto"><table><tr>'
            + "".join(f"<th>{e(h)}</th>" for h in header)
            + "</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in cells]
        parts.append("</table></div>")
        fitted = slopes(measured_rows(results.rows))
        if fitted:
            keys = sorted({k for v in fitted.values() for k in v})
            parts.append(
                "<h3>Slopes (log-log: cost grows as n^slope)</h3><table><tr><th>method</th>"
                + "".join(f"<th>{e(k)}</th>" for k in keys)
                + "</tr>"
            )
            for name, values in fitted.items():
                parts.append(
                    f"<tr><td>{e(name)}</td>"
                    + "".join(f"<td>{e(_cell(values.get(k)))}</td>" for k in keys)
                    + "</tr>"
                )
            parts.append("</table>")
        context = _context(results)
        parts.append(
            f"<h3>How it was produced</h3><p>Command: <code>{e(context['command'])}</code><br>"
            f"Written {e(str(context['created']))}; run time {e(_cell(context['seconds']))} s.<br>"
            f"<b>Commit:</b> {e(context['commit'])}<br>"
            f"<b>Seeds:</b> {e(_inline(context['seeds']))}<br>"
            f"<b>Versions:</b> {e(_inline(context['versions']))}<br>"
            f"<b>Hardware:</b> {e(_inline(context['hardware']))}</p>"
        )
        if results.summary:
            parts.append(
                f"<details><summary>Summary</summary><pre>{e(json.dumps(results.summary, indent=1))}</pre>"
                "</details>"
            )
        parts.append(
            f"<details><summary>Configuration</summary><pre>{e(json.dumps(results.config, indent=1))}</pre>"
            "</details>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(sections: list[tuple[str, ResultsFile, list[Plot]]], image_folder: str) -> str:
    lines = ["# recunlearn report", ""]
    for index, (path, results, figures) in enumerate(sections):
        lines += [f"## {_section_title(results, path)}", ""]
        for plot in figures:
            lines += [
                f"![{plot.title}]({image_folder}/{_image_name(index, results, path, plot)})",
                "",
                f"*{plot.title}.* {plot.caption}",
                "",
            ]
        header, cells = table(results.rows)
        lines += markdown_grid(header, cells).splitlines()
        fitted = slopes(measured_rows(results.rows))
        if fitted:
            lines += ["", "Slopes (log-log):", "```json", json.dumps(fitted, indent=1), "```"]
        context = _context(results)
        lines += [
            "",
            f"Command: `{context['command']}`  ",
            f"Written {context['created']}; run time {_cell(context['seconds'])} s.",
            "",
            f"Commit: {context['commit']}",
            "",
        ]
        for name in ("seeds", "versions", "hardware"):
            lines += [f"{name.capitalize()}: {_inline(context[name])}", ""]
        lines += [
            "<details><summary>Configuration</summary>",
            "",
            "```json",
            json.dumps(results.config, indent=1),
            "```",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def _image_name(index: int, results: ResultsFile, path: str, plot: Plot) -> str:
    """Unique per section (its ``index``): two inputs may share protocol and file name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{index + 1}-{results.protocol}-{Path(path).stem}")
    return f"{stem}-{plot.slug}.png"


def write_report(results_paths: list[str | Path], out: str | Path) -> dict[str, Path]:
    """Write ``out``/report.html (self-contained) and ``out``/report.md with its PNGs in ``out``/figures,
    each figure also as SVG beside its PNG."""
    out = Path(out)
    figures_dir = out / "figures"
    loaded = [
        (str(path), load_results(path)) for path in results_paths
    ]  # every input read before anything is written
    figures_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for index, (path, results) in enumerate(loaded):
        figures = plots(results)
        for plot in figures:
            png = figures_dir / _image_name(index, results, path, plot)
            png.write_bytes(plot.png)
            png.with_suffix(".svg").write_bytes(plot.svg)
        sections.append((path, results, figures))
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(sections))
    md_path.write_text(render_markdown(sections, "figures"))
    return {"html": html_path, "markdown": md_path, "figures": figures_dir}
