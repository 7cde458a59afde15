"""Throughput figures of BENCHMARKS.md's ingest and loaders sections.

Each figure is drawn from a *summary*: the numbers the section's table prints (images/s of
every method, its CPU cost, the ideal rate the "% of ideal" column divides by), made
either from the script's results dict (:func:`ingest_summary`, :func:`loaders_summary`:
what ``bench/ingest.py`` / ``bench/loaders.py`` keep in ``WORK/results-*.json``) or read
back from the recorded section (:func:`ingest_summary_from_section`,
:func:`loaders_summary_from_section`), so a figure made from the page matches the page.
:func:`plot_throughput` draws one: images/s bars per method against the anchors (FFCV,
WebDataset script / ImageFolder) with the ideal as a line, and CPU per image beside it.
Figure plumbing (fixed size, no metadata, :func:`try_plot`) is ``experiments.plots``'s.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))   # experiments.plots, when run as `python bench/X.py`

from experiments.plots import (  # noqa: E402
    BASE,
    OTHERS,
    VARIANT,
    WIDE,
    md_tables,
    new_figure,
    number,
    save_png,
    styled,
    try_plot,
)

__all__ = ["CORPUS_WHAT", "FIGURE_DIR", "LOADER_LABELS", "figures_from_benchmarks", "image_line",
           "ingest_summary", "ingest_summary_from_section", "loaders_summary",
           "loaders_summary_from_section", "plot_throughput", "section_figure", "section_text",
           "try_plot"]

#: Where a section's figure goes, relative to the markdown file it is linked from.
FIGURE_DIR = Path("docs") / "bench"


def section_figure(out_md: str | None, section: str, work: str | os.PathLike) -> tuple[Path, str | None]:
    """``(png path, link for the section or None)``: next to ``out_md`` under
    ``docs/bench/SECTION.png`` when the section is written there, else ``WORK/SECTION.png``
    (not linked)."""
    if out_md:
        rel = FIGURE_DIR / f"{section}.png"
        return Path(out_md).resolve().parent / rel, rel.as_posix()
    return Path(work) / f"{section}.png", None


def image_line(link: str | None, what: str) -> list[str]:
    """The section's markdown lines linking its figure, a blank line first (none without a
    figure)."""
    return ["", f"![{what}]({link})"] if link else []


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------

def ingest_summary(results: Mapping) -> dict:
    """The ingest section's numbers from ``bench/ingest.py``'s results dict (its table's
    labels, best runs, CPU of the best-CPU run, ideal = W x single-core FFCV step)."""
    n, w = results["data"]["images"], results["workers"]
    groups = []
    for res, r in results["resolutions"].items():
        methods = []
        entries = [("FFCV DatasetWriter", r["ffcv"]), ("webdataset script", r["wds"])]
        entries += [(f"shardforge (shard_size={e['shard_size']}, {e['shards']} shards)", e)
                    for k, e in r.items() if k.startswith("shardforge-")]
        for label, e in entries:
            methods.append({"label": label, "images_per_s": n / min(e["runs"]),
                            "cpu": 1000 * min(e["cpu"]) / n})
        groups.append({"name": f"R = {res}", "ideal": w * r["single_core"]["ffcv_step"],
                       "methods": methods})
    return {"title": f"Ingest: {n} JPEGs into training formats, {w} workers (best run)",
            "ideal_label": f"ideal: {w} x single-core FFCV step",
            "cpu_label": "CPU s / 1k images (best run)", "groups": groups}


def ingest_summary_from_section(text: str) -> dict:
    """:func:`ingest_summary`'s dict read from the ``ingest`` section's tables."""
    tables = md_tables(text)
    main = next(t for t in tables if t.header[:2] == ["R", "method"])
    single = next(t for t in tables if t.header[0] == "R" and "PIL full decode" in t.header)
    cols = main.header
    ideal_col = next(i for i, h in enumerate(cols) if h.startswith("% of ideal"))
    w = int(re.search(r"\((\d+) x", cols[ideal_col]).group(1))
    ffcv_col = next(i for i, h in enumerate(single.header) if h.startswith("FFCV step"))
    ideal = {row[0]: w * number(row[ffcv_col]) for row in single.rows}
    rate, cpu = cols.index("images/s"), cols.index("CPU s / 1k images (best run)")
    groups: dict[str, dict] = {}
    for row in main.rows:
        g = groups.setdefault(row[0], {"name": f"R = {row[0]}", "ideal": ideal[row[0]],
                                       "methods": []})
        g["methods"].append({"label": row[1], "images_per_s": number(row[rate]),
                             "cpu": number(row[cpu])})
    m = re.search(r"--images (\d+)", text)
    n = m.group(1) if m else "the"
    return {"title": f"Ingest: {n} JPEGs into training formats, {w} workers (best run)",
            "ideal_label": f"ideal: {w} x single-core FFCV step",
            "cpu_label": "CPU s / 1k images (best run)", "groups": list(groups.values())}


#: The loaders section's method names (``bench/loaders_report.py``'s ``METHODS``).
LOADER_LABELS = {"shardforge": "shardforge WebDataset stream",
                 "shardforge_threads": "shardforge WebDataset stream, worker_kind='thread'",
                 "ffcv": "FFCV Loader (.beton)",
                 "imagefolder": "torchvision ImageFolder + DataLoader"}


#: The loaders section's corpora (``bench/loaders.py --corpus``), as the x-axis names them.
CORPUS_WHAT = {"photos": "natural photos", "demo": "demo images"}


def loaders_summary(results: Mapping, labels: Mapping[str, str] = LOADER_LABELS) -> dict:
    """The loaders section's numbers from ``bench/loaders.py``'s results dict (best epoch,
    median CPU per image, ideal = W x single-core shardforge step)."""
    n, args = results["samples"], results["args"]
    w = args["workers"]
    what = CORPUS_WHAT[args.get("corpus", "demo")]
    methods = [{"label": labels.get(k, k), "images_per_s": v["images_per_s"],
                "cpu": 1000 * statistics.median(v["cpu"]) / n}
               for k, v in results["methods"].items()]
    return {"title": f"Loaders: RandomResizedCrop({args['size']}) + flip, {w} workers, "
                     f"batch {args['batch_size']} (best epoch)",
            "ideal_label": f"ideal: {w} x single-core shardforge step",
            "cpu_label": "CPU ms / image (median epoch)",
            "groups": [{"name": f"{n} {what}, stored at <= {args['max_res']} px",
                        "ideal": w * results["single_core"]["shardforge_step"],
                        "methods": methods}]}


def loaders_summary_from_section(text: str) -> dict:
    """:func:`loaders_summary`'s dict read from the ``loaders`` section."""
    tables = md_tables(text)
    main = next(t for t in tables if t.header[:2] == ["method", "epochs (s)"])
    single = next(t for t in tables if t.header[0] == "PIL full decode")
    step = number(single.rows[0][next(i for i, h in enumerate(single.header)
                                      if h.startswith("shardforge step"))])
    w = int(re.search(r"\((\d+) x single-core shardforge step\)", text).group(1))
    cols = main.header
    rate, cpu = cols.index("images/s"), cols.index("CPU ms / image (median)")
    methods = [{"label": row[0], "images_per_s": number(row[rate]), "cpu": number(row[cpu])}
               for row in main.rows]
    size = re.search(r"RandomResizedCrop to (\d+)x", text).group(1)
    batch = re.search(r"batch size (\d+)", text).group(1)
    n = re.search(r"one epoch of (\d+) images", text).group(1)
    m = re.search(r"- Data: \d+ (natural photos|demo images)", text)
    what = m.group(1) if m else "images"
    max_res = re.search(r"--max-res (\d+)", text).group(1)
    return {"title": f"Loaders: RandomResizedCrop({size}) + flip, {w} workers, batch {batch} "
                     "(best epoch)",
            "ideal_label": f"ideal: {w} x single-core shardforge step",
            "cpu_label": "CPU ms / image (median epoch)",
            "groups": [{"name": f"{n} {what}, stored at <= {max_res} px", "ideal": w * step,
                        "methods": methods}]}


def section_text(md: str, name: str) -> str:
    """The body of BENCHMARKS.md's ``<!-- bench:NAME -->`` section."""
    m = re.search(rf"<!-- bench:{re.escape(name)} -->(.*?)<!-- /bench:{re.escape(name)} -->",
                  md, re.S)
    if not m:
        raise KeyError(f"no section {name!r}")
    return m.group(1)


# --------------------------------------------------------------------------------------------
# The figure
# --------------------------------------------------------------------------------------------

def method_colours(labels: list[str]) -> dict[str, str]:
    """FFCV blue, the other anchor green, shardforge orange (its second setting lighter)."""
    shardforge = iter((VARIANT, "#F2B880", "#A0522D"))
    out = {}
    for label in labels:
        low = label.lower()
        out[label] = (next(shardforge, VARIANT) if low.startswith("shardforge")
                      else BASE if low.startswith("ffcv") else OTHERS[0])
    return out


@styled
def plot_throughput(summary: Mapping, path: str | os.PathLike) -> str:
    """Images/s per method (left: bars, one group per setting, the group's ideal rate as a
    dashed line over it) and CPU per image (right, lower is cheaper)."""
    fig, (left, right) = new_figure(WIDE, ncols=2)
    groups = summary["groups"]
    labels = list(dict.fromkeys(m["label"] for g in groups for m in g["methods"]))
    colours = method_colours(labels)
    width = 0.8 / len(labels)
    for gi, g in enumerate(groups):
        for m in g["methods"]:
            x = gi + (labels.index(m["label"]) - (len(labels) - 1) / 2) * width
            for ax, key, fmt in ((left, "images_per_s", "{:,.0f}"), (right, "cpu", "{:.2f}")):
                bar = ax.bar([x], [m[key]], width * 0.92, color=colours[m["label"]],
                             label=m["label"] if gi == 0 and ax is left else None)[0]
                ax.annotate(fmt.format(m[key]), (x, bar.get_height()), xytext=(0, 2),
                            textcoords="offset points", ha="center", va="bottom", fontsize=7)
        left.plot([gi - 0.42, gi + 0.42], [g["ideal"]] * 2, color="black", linestyle="--",
                  linewidth=1.0, label=summary["ideal_label"] if gi == 0 else None)
        left.annotate(f"ideal {g['ideal']:,.0f}", (gi + 0.42, g["ideal"]), xytext=(0, 3),
                      textcoords="offset points", ha="right", va="bottom", fontsize=7)
    top = max(max(max(m["images_per_s"] for m in g["methods"]), g["ideal"]) for g in groups)
    left.set_ylim(0, top * 1.1)
    for ax in (left, right):
        ax.set_xticks(range(len(groups)), [g["name"] for g in groups])
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.grid(axis="y", alpha=0.3)
    left.set_ylabel("images/s (higher is faster)")
    right.set_ylabel(f"{summary['cpu_label']} (lower is cheaper)")
    fig.legend(loc="outside lower center", ncol=min(3, len(labels) + 1), fontsize=8)
    fig.suptitle(summary["title"])
    return save_png(fig, path)


def figures_from_benchmarks(md_path: str | os.PathLike = REPO / "BENCHMARKS.md") -> list[str]:
    """Draw the ingest and loaders figures from the sections recorded in ``md_path``, to
    where the scripts put them (``docs/bench/`` next to it); return the paths."""
    md = Path(md_path).read_text()
    out = []
    for name, summarise in (("ingest", ingest_summary_from_section),
                            ("loaders", loaders_summary_from_section)):
        path, _ = section_figure(str(md_path), name, ".")
        out.append(plot_throughput(summarise(section_text(md, name)), path))
    return out
