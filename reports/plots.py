"""Inline SVG plots for the HTML report: plain strings, no JavaScript, no network, no fonts to fetch.

- ``utilisation_sparkline``: how close a target's cases came to the bound — a histogram of the
  per-case utilisation (error/bound, the worst over the case's tensors) in logarithmic bins, the
  last bin (> 1) being the out-of-bound cases.
- ``error_vs_bound``: a discrepancy's worst elements, each as its allowed bound (grey bar) and its
  error (dot, red when above the bound), on a logarithmic axis.
- ``colour_map``: the layer × backend·dtype matrix, one square per cell, coloured by status
  (discrepancy, known, unsupported) and, for passing cells, by their worst utilisation.

Every text that comes from records is XML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from reports.records import as_float

# Utilisation bins: (upper edge, label). A case lands in the first bin whose edge it does not
# exceed; "0" holds bit-exact cases, the last bin everything out of bound (NaN included).
UTIL_BINS: tuple[tuple[float, str], ...] = (
    (0.0, "0 (exact)"), (1e-4, "≤1e-4"), (1e-3, "≤1e-3"), (1e-2, "≤0.01"), (0.1, "≤0.1"), (0.5, "≤0.5"),
    (1.0, "≤1"), (math.inf, ">1 (out of bound)"),
)
# Sequential blues up to the bound (darker: closer to it), red beyond it; bit-exact cases teal (a
# hue of their own: never confused with the hatched grey of unsupported cells).
BIN_COLOURS = ("#5eead4", "#dbeafe", "#bfdbfe", "#93c5fd", "#60a5fa", "#2563eb", "#1e3a8a", "#dc2626")

STATUS_COLOURS = {"fail": "#dc2626", "known": "#f59e0b", "unsupported": "url(#hatch-unsupported)", "empty": "#f4f4f5"}
# Unsupported cells: grey diagonal hatching on white (not a flat colour of the utilisation scale).
HATCH = ('<defs><pattern id="hatch-unsupported" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
         '<line x1="0" y1="0" x2="0" y2="6" stroke="#a1a1aa" stroke-width="2.5"/></pattern></defs>')
SHORT_DTYPE = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}
CHAR_W = 6.6  # width of a bold 11 px character, about
SLANT = 35  # degrees: slanted backend names in the colour map's head


def _fmt(x: float) -> str:
    """Coordinates with two decimals, no trailing zeros."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def util_bin(value: float) -> int:
    """The index in ``UTIL_BINS`` of a utilisation (NaN counts as out of bound)."""
    if math.isnan(value):
        return len(UTIL_BINS) - 1
    for i, (edge, _) in enumerate(UTIL_BINS):
        if value <= edge:
            return i
    return len(UTIL_BINS) - 1


def utilisation_histogram(values: Iterable[float]) -> list[int]:
    """Counts per ``UTIL_BINS`` bin."""
    counts = [0] * len(UTIL_BINS)
    for v in values:
        counts[util_bin(v)] += 1
    return counts


def utilisation_sparkline(counts: Sequence[int], width: int = 128, height: int = 26) -> str:
    """A small bar chart of ``utilisation_histogram`` counts (bar height ∝ √count so that a single
    case next to hundreds stays visible); each bar has a tooltip with its bin and count."""
    n = len(counts)
    total = sum(counts)
    gap = 2.0
    bar_w = (width - gap * (n - 1)) / n
    top = max(counts) if counts else 0
    parts = [f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="utilisation distribution of {total} cases">']
    parts.append(f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#d4d4d8"/>')
    for i, count in enumerate(counts):
        x = i * (bar_w + gap)
        h = 0.0 if not count else max(2.0, (height - 2) * math.sqrt(count / top))
        label = f"{UTIL_BINS[i][1]}: {count} case{'' if count == 1 else 's'}"
        parts.append(f'<rect x="{_fmt(x)}" y="{_fmt(height - 1 - h)}" width="{_fmt(bar_w)}" height="{_fmt(h + 1)}" '
                     f'fill="{BIN_COLOURS[i] if count else "#f4f4f5"}"><title>{escape(label)}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def sparkline_legend() -> str:
    """The bins and their colours, as an inline SVG legend."""
    parts = []
    x = 0
    for (_, label), colour in zip(UTIL_BINS, BIN_COLOURS):
        parts.append(f'<rect x="{x}" y="3" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="12" font-size="11">{escape(label)}</text>')
        x += 20 + 6.5 * len(label)
    return (f'<svg class="legend" xmlns="http://www.w3.org/2000/svg" width="{int(x)}" height="16" '
            f'role="img" aria-label="utilisation bins">{"".join(parts)}</svg>')


def _log_position(value: float, lo: float, hi: float, width: float) -> float:
    return width * (math.log10(value) - lo) / (hi - lo)


def error_vs_bound(worst: Sequence[dict[str, Any]], width: int = 460) -> str:
    """The worst elements of one tensor: a grey bar to each element's bound and a dot at its error,
    on a shared log axis. A zero bound (bit-exact element) or zero error sits at the axis' left
    end ("0"); an infinite or NaN error at its right end. Empty string when there is nothing to plot."""
    rows = []
    for w in worst:
        err, bound = as_float(w.get("err")), as_float(w.get("bound"))
        rows.append((w.get("index"), err, bound))
    if not rows:
        return ""
    finite = [v for _, e, b in rows for v in (e, b) if math.isfinite(v) and v > 0]
    lo = math.floor(math.log10(min(finite))) if finite else -1
    hi = math.ceil(math.log10(max(finite))) if finite else 1
    if hi - lo < 2:
        lo, hi = lo - 1, max(hi, lo + 1) + 1
    label_w, right_pad, row_h, top, gutter = 130, 44, 18, 16, 22
    plot_w = width - label_w - right_pad
    height = top + row_h * len(rows) + 22

    def pos(v: float) -> float:
        if math.isnan(v) or v == math.inf:
            return plot_w + gutter
        if v <= 0:
            return -gutter
        return _log_position(v, lo, hi, plot_w)

    out = [f'<svg class="errplot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="error against bound for the worst elements">']
    out.append(f'<g transform="translate({label_w},0)" font-size="10" fill="#52525b">')
    # A label per decade while they fit (about 34 px each: "1e-308"), else every step-th decade;
    # every decade keeps its grid line.
    step = max(1, math.ceil((hi - lo) * 34 / plot_w))
    for e in range(lo, hi + 1):
        x = _fmt(plot_w * (e - lo) / (hi - lo))  # (10.0 ** e underflows below 1e-323)
        out.append(f'<line x1="{x}" y1="{top - 4}" x2="{x}" y2="{height - 18}" stroke="#e4e4e7"/>')
        if (e - lo) % step == 0:
            out.append(f'<text class="tick" x="{x}" y="{height - 6}" text-anchor="middle">1e{e}</text>')
    out.append(f'<text x="{-gutter}" y="{height - 6}" text-anchor="middle">0</text>')
    out.append(f'<text x="{_fmt(plot_w + gutter)}" y="{height - 6}" text-anchor="middle">inf</text>')
    out.append("</g>")
    out.append(f'<text x="{label_w}" y="10" font-size="10" fill="#52525b">grey bar to the tick: bound · dot: |error| '
               f'(red: out of bound)</text>')
    for i, (index, err, bound) in enumerate(rows):
        y = top + i * row_h
        bad = not (err <= bound)
        colour = "#dc2626" if bad else "#16a34a"
        idx = "(" + ", ".join(str(j) for j in (index or [])) + ")"
        tip = f"index {idx}: |error| {err:.6g}, bound {bound:.6g}" + (" (exact)" if bound == 0 else "")
        bx = pos(bound)
        out.append(f'<g><title>{escape(tip)}</title>'
                   f'<text x="{label_w - gutter - 8}" y="{y + 12}" font-size="11" text-anchor="end" '
                   f'font-family="monospace">{escape(idx)}</text>'
                   f'<rect x="{label_w - gutter}" y="{y + 4}" width="{_fmt(max(0.0, bx + gutter))}" height="9" '
                   f'fill="#d4d4d8"/>'
                   f'<line x1="{_fmt(label_w + bx)}" y1="{y + 1}" x2="{_fmt(label_w + bx)}" y2="{y + 16}" '
                   f'stroke="#71717a" stroke-width="1.5"/>'
                   f'<circle cx="{_fmt(label_w + pos(err))}" cy="{y + 8.5}" r="4.5" fill="{colour}"/></g>')
    out.append("</svg>")
    return "".join(out)


def _cell_colour(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "#ffffff"
    status = cell["status"]
    if status != "pass":
        return STATUS_COLOURS.get(status, "#f4f4f5")
    util = cell.get("util")
    return BIN_COLOURS[util_bin(util)] if util is not None else "#86efac"


def colour_map(matrix: dict[str, Any], cell_w: int = 30, row_h: int = 18) -> str:
    """The matrix (rows: layers; columns: backend × dtype, from ``html._matrix``) as an SVG
    colour map. Each row is a ``<g class="mrow">`` carrying the row's filter attributes
    (``data-family``, ``data-backend``, ``data-dtype``, ``data-verdict``, ``data-text``), so the
    report's script can hide rows and re-stack the rest; each column carries ``data-backend`` and
    ``data-dtype``. A cell links to its discrepancy, or else to its row of the results table."""
    columns = [(backend, dtype) for backend, dtypes in matrix["backends"] for dtype in dtypes]
    rows = matrix["rows"]
    label_w = 14 + 7 * max([len(r["op"]) for r in rows] + [6])
    # Backend names sit level above their columns when every one fits its span with room to
    # spare; otherwise all are slanted (each starts over its own first column, so neighbours
    # never run together), and the head grows to hold the longest.
    names = [b for b, _ in matrix["backends"]]
    level = all(len(b) * CHAR_W + 10 <= cell_w * len(d) for b, d in matrix["backends"])
    longest = max([len(b) for b in names] + [1]) * CHAR_W
    name_h = 20 if level else int(longest * math.sin(math.radians(SLANT))) + 22
    head_h = name_h + 20
    width = label_w + cell_w * len(columns) + 4 + (0 if level else int(longest * math.cos(math.radians(SLANT))))
    height = head_h + row_h * len(rows) + 4
    out = [f'<svg id="colour-map" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'data-head="{head_h}" data-row="{row_h}" viewBox="0 0 {width} {height}" font-size="11" '
           f'role="img" aria-label="layer by backend and dtype colour map">', HATCH]
    x = label_w
    for backend, dtypes in matrix["backends"]:
        span = cell_w * len(dtypes)
        if level:
            label = (f'<text class="mback" x="{_fmt(x + span / 2)}" y="14" text-anchor="middle" '
                     f'font-weight="600">{escape(backend)}</text>')
        else:
            lx, ly = x + cell_w / 2 - 3, name_h - 5
            label = (f'<text class="mback" x="{_fmt(lx)}" y="{ly}" text-anchor="start" font-weight="600" '
                     f'transform="rotate(-{SLANT} {_fmt(lx)} {ly})">{escape(backend)}</text>')
        out.append(f'<g><title>{escape(backend)}</title>{label}'
                   f'<line x1="{x + 2}" y1="{name_h - 1}" x2="{x + span - 2}" y2="{name_h - 1}" stroke="#a1a1aa"/>'
                   f'<line x1="{x}" y1="{name_h - 1}" x2="{x}" y2="{height - 2}" stroke="#d4d4d8"/></g>')
        for i, dtype in enumerate(dtypes):
            out.append(f'<text class="mcol" data-backend={quoteattr(backend)} data-dtype={quoteattr(dtype)} '
                       f'x="{_fmt(x + cell_w * i + cell_w / 2)}" y="{name_h + 14}" text-anchor="middle" '
                       f'fill="#52525b">{escape(SHORT_DTYPE.get(dtype, dtype))}<title>{escape(dtype)}</title></text>')
        x += span
    for r, row in enumerate(rows):
        y = head_h + r * row_h
        out.append(f'<g class="mrow filterable" transform="translate(0,{y})" {row["attrs"]}>')
        out.append(f'<text x="{label_w - 8}" y="{row_h - 5}" text-anchor="end">{escape(row["op"])}</text>')
        for c, cell in enumerate(row["cells"]):
            backend, dtype = columns[c]
            cx = label_w + c * cell_w
            colour = _cell_colour(cell)
            rect = (f'<rect class="mcell" data-backend={quoteattr(backend)} data-dtype={quoteattr(dtype)} '
                    f'x="{cx + 1}" y="1" width="{cell_w - 2}" height="{row_h - 2}" rx="2" fill="{colour}" '
                    f'stroke="{"#a1a1aa" if cell is not None and cell["status"] == "unsupported" else "#e4e4e7"}">')
            if cell is None:
                out.append(rect + f'<title>{escape(row["op"])} · {escape(backend)} · {escape(dtype)}: not run'
                                  f'</title></rect>')
                continue
            util = "" if cell.get("util") is None else f", worst utilisation {as_float(cell['util']):.3g}"
            tip = f"{row['op']} · {backend} · {dtype}: {cell['status']} ({cell['title']}{util})"
            target = cell.get("anchor") or cell.get("row_id") or ""
            body = rect + f"<title>{escape(tip)}</title></rect>"
            if cell["status"] == "fail":
                body += (f'<text x="{_fmt(cx + cell_w / 2)}" y="{row_h - 5}" text-anchor="middle" fill="#fff" '
                         f'font-weight="700" pointer-events="none">✗</text>')
            out.append(f'<a href="#{escape(target)}">{body}</a>' if target else body)
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def colour_map_legend() -> str:
    """Status colours and the utilisation scale of passing cells."""
    items = [("discrepancy", STATUS_COLOURS["fail"]), ("known", STATUS_COLOURS["known"]),
             ("unsupported", STATUS_COLOURS["unsupported"])]
    items += [(f"pass, util {label}", colour) for (_, label), colour in zip(UTIL_BINS[:-1], BIN_COLOURS[:-1])]
    parts, x = [HATCH.replace('id="hatch-unsupported"', 'id="hatch-legend"')], 0.0
    for label, colour in items:
        colour = colour.replace("hatch-unsupported", "hatch-legend")
        parts.append(f'<rect x="{_fmt(x)}" y="3" width="10" height="10" fill="{colour}" stroke="#a1a1aa"/>'
                     f'<text x="{_fmt(x + 14)}" y="12" font-size="11">{escape(label)}</text>')
        x += 22 + 6.2 * len(label)
    return (f'<svg class="legend" xmlns="http://www.w3.org/2000/svg" width="{int(x)}" height="16" '
            f'role="img" aria-label="colour map legend">{"".join(parts)}</svg>')
