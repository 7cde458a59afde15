"""Inline SVG for the pages: bar charts, histograms and the lineage graph.

Plain strings, no plotting library and no script: every bar and node carries a ``<title>``
(the browser's tooltip), every text is escaped. Callers mark the result safe for Jinja.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from shardforge.view.datasets import Histogram
from shardforge.view.model import BuildRow

#: Above this many classes the per-class chart is sorted by count (a profile) and unlabelled.
LABELLED_CLASSES = 40


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def bar_chart(values: Sequence[float], tips: Sequence[str], labels: Sequence[str] = (),
              width: int = 640, height: int = 160, caption: str = "") -> str:
    """Vertical bars of ``values`` (one ``<title>`` tip each), x labels under the bars when
    ``labels`` is given, the largest value marked on the y axis."""
    n = max(1, len(values))
    top = max(max(values, default=0), 1)
    left, bottom = 44, 34 if labels else 16
    plot_w, plot_h = width - left - 4, height - bottom - 8
    step = plot_w / n
    gap = min(2.0, step * 0.2)
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{_esc(caption)}">',
             f'<line x1="{left}" y1="8" x2="{left}" y2="{8 + plot_h}" class="axis"/>',
             f'<line x1="{left}" y1="{8 + plot_h}" x2="{width - 4}" y2="{8 + plot_h}" '
             'class="axis"/>',
             f'<text x="{left - 4}" y="14" class="tick" text-anchor="end">{_fmt(top)}</text>',
             f'<text x="{left - 4}" y="{8 + plot_h}" class="tick" text-anchor="end">0</text>']
    for i, (v, tip) in enumerate(zip(values, tips, strict=True)):
        h = plot_h * float(v) / top
        x = left + i * step + gap / 2
        parts.append(f'<rect x="{x:.2f}" y="{8 + plot_h - h:.2f}" width="{max(step - gap, 0.5):.2f}" '
                     f'height="{h:.2f}" class="bar"><title>{_esc(tip)}</title></rect>')
    every = max(1, int(np.ceil(len(labels) / max(1, plot_w // 40)))) if labels else 1
    for i, label in enumerate(labels):
        if i % every == 0:
            x = left + (i + 0.5) * step
            parts.append(f'<text x="{x:.1f}" y="{height - 18}" class="tick" '
                         f'text-anchor="middle">{_esc(label)}</text>')
    if caption:
        parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 3}" class="caption" '
                     f'text-anchor="middle">{_esc(caption)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() or v >= 100 else f"{v:.3g}"


def class_counts_chart(counts: np.ndarray, names: Sequence[str]) -> str:
    """Samples per class: one labelled bar per class (label order) up to
    :data:`LABELLED_CLASSES` classes; above, the counts sorted from most to fewest (a
    profile of e.g. ImageNet's 1,000 classes), each bar's class and count in its tip."""
    counts = np.asarray(counts, np.int64)
    tips = [f"{names[i] if i < len(names) else i}: {int(c):,}" for i, c in enumerate(counts)]
    if len(counts) <= LABELLED_CLASSES:
        labels = [str(names[i] if i < len(names) else i)[:8] for i in range(len(counts))]
        return bar_chart(counts.tolist(), tips, labels, caption="samples per class")
    order = np.argsort(-counts, kind="stable")
    return bar_chart(counts[order].tolist(), [tips[i] for i in order],
                     caption=f"samples per class, {len(counts):,} classes sorted by count")


def histogram_chart(hist: Histogram, what: str) -> str:
    """``hist`` as bars, each tip ``lo-hi: count``, the range under the axis."""
    edges, counts = hist.edges, hist.counts
    tips = [f"{what} {edges[i]:,.0f}-{edges[i + 1]:,.0f}: {int(c):,}"
            for i, c in enumerate(counts)]
    labels = [f"{edges[i]:,.0f}" for i in range(len(counts))]
    return bar_chart(counts.tolist(), tips, labels, width=420, height=150,
                     caption=f"{what} ({edges[0]:,.0f} to {edges[-1]:,.0f})")


#: Lineage graph geometry (px): column per depth, row per build.
_COL, _ROW, _NODE_W, _NODE_H = 210, 34, 180, 24


def lineage_graph(rows: Sequence[BuildRow]) -> str:
    """The lineage forest as an SVG graph: one node per build (a link to its page; the
    pipeline in its tip), a column per generation, an edge from each parent to its child.
    ``rows`` in the order of :func:`shardforge.view.model.catalog_rows`."""
    if not rows:
        return ""
    where = {r.build.ref: (r.depth * _COL + 4, i * _ROW + 4) for i, r in enumerate(rows)}
    width = max(x for x, _ in where.values()) + _NODE_W + 8
    height = len(rows) * _ROW + 8
    parts = [f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             'aria-label="lineage graph">']
    for r in rows:
        parent = r.build.parent
        if parent in where and parent != r.build.ref:
            px, py = where[parent]
            x, y = where[r.build.ref]
            sx, sy, ey = px + 16, py + _NODE_H, y + _NODE_H / 2
            parts.append(f'<path d="M{sx},{sy} V{ey} H{x}" class="edge"/>')
    for r in rows:
        x, y = where[r.build.ref]
        b = r.build
        tip = f"{b.ref}: {b.pipeline} from {b.origin or '?'}; {b.samples:,} samples"
        cls = "node latest" if r.latest else "node"
        parts.append(f'<a href="/d/{_esc(b.ref)}"><g class="{cls}"><title>{_esc(tip)}</title>'
                     f'<rect x="{x}" y="{y}" width="{_NODE_W}" height="{_NODE_H}" rx="4"/>'
                     f'<text x="{x + 8}" y="{y + 16}">{_esc(b.ref)} '
                     f'<tspan class="pipe">{_esc(b.pipeline)}</tspan></text></g></a>')
    parts.append("</svg>")
    return "".join(parts)


def heat_map_png(values: np.ndarray) -> bytes:
    """A 2-D array of non-negative values as a PNG heat map (black = 0, through red and
    yellow to white = the maximum), each value a 1 px cell."""
    import io

    from PIL import Image

    v = np.asarray(values, np.float64)
    top = float(v.max()) if v.size and v.max() > 0 else 1.0
    t = np.clip(v / top, 0.0, 1.0)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)],
                   axis=-1)
    buf = io.BytesIO()
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()
