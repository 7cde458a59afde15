"""Figures of the results pages (docs/results/), from the result dicts the experiments make.

Each ``plot_*`` function takes what its experiment script already produces (or the same
dict read back from the page's recorded table, ``*_from_page``) and writes one PNG:
matplotlib's Agg canvas without pyplot (no global state), a fixed size and dpi, and no
``Software`` / date metadata, so the same numbers give the same file on the same
matplotlib. The library (``src/shardforge``) never imports this module: matplotlib is an
optional extra (``bench``, ``test``).

* :func:`plot_cuda_sweep` - clean val top-1 against the poison fraction p, one line per
  setting (``experiments/cuda_effect.py``'s :class:`EffectRun` rows);
* :func:`plot_stylize` - shape bias and clean top-1, demo vs demo-stylized, per setting
  (``experiments/stylize_effect.py``'s per-dataset dicts, one per ``--tag``);
* :func:`plot_reinforce` - clean val top-1 against student epochs per kind of targets,
  mean and min-max over seeds (``experiments/reinforce_effect.py``'s result);
* :func:`plot_distill` - RDED vs random real images per IPC, mean and every seed
  (``experiments/distill_effect.py``'s results, one per ``--tag``).

``scripts/plots_from_pages.py`` draws them from the numbers recorded in the pages.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: Every figure: inches at DPI (pixels = FIGSIZE x DPI).
DPI = 100
FIGSIZE = (8.0, 4.5)
WIDE = (10.0, 4.5)
#: Colours of the two sides of every comparison (colour-blind safe pair) and the rest.
BASE, VARIANT = "#4C72B0", "#DD8452"
OTHERS = ("#55A868", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
         "axes.spines.right": False, "legend.frameon": False, "savefig.dpi": DPI,
         "svg.hashsalt": "shardforge", "path.simplify": False}

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
#: Where each results page's figure lives (linked from the page as ``img/NAME.png``).
FIGURES = {name: RESULTS / "img" / f"{name}.png"
           for name in ("unlearnable", "stylize", "reinforce", "distill")}


# --------------------------------------------------------------------------------------------
# Figure plumbing
# --------------------------------------------------------------------------------------------

def styled(fn):
    """Run a plotting function under matplotlib's default style plus :data:`STYLE`, whatever
    the user's matplotlibrc says (the same numbers give the same pixels)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib.style

        with matplotlib.style.context(["default", STYLE]):
            return fn(*args, **kwargs)
    return wrapper


def new_figure(size: tuple[float, float] = FIGSIZE, ncols: int = 1):
    """``(figure, axes)``: an Agg figure of ``size`` inches, constrained layout (no pyplot:
    no global figure state, no GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def save_png(fig, path: str | os.PathLike) -> str:
    """Write ``fig`` to ``path`` (atomically, parents created) at :data:`DPI`, without
    metadata that would change from install to install; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    os.replace(tmp, path)
    return str(path)


def _label_bars(ax, bars, values: Sequence[float | None], fmt: str = "{:.2f}",
                tops: Sequence[float] | None = None) -> None:
    """Write each bar's value above it (above ``tops[i]`` when given: dots over the bar)."""
    for i, (bar, v) in enumerate(zip(bars, values, strict=True)):
        if v is not None:
            y = max(bar.get_height(), tops[i]) if tops else bar.get_height()
            ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, y),
                        xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7)


def _as_dict(row) -> dict:
    return dataclasses.asdict(row) if dataclasses.is_dataclass(row) else dict(row)


# --------------------------------------------------------------------------------------------
# CUDA (docs/results/unlearnable.md)
# --------------------------------------------------------------------------------------------

@styled
def plot_cuda_sweep(series: Mapping[str, Iterable], path: str | os.PathLike,
                    chance: float = 0.1) -> str:
    """Clean val top-1 (mean of the last five epochs) against the poison fraction p, one
    line per setting; the first setting also gets its train top-1 on its own (poisoned)
    data, dotted. ``series``: ``{label: [EffectRun or its dict, ...]}`` as
    ``experiments.cuda_effect.run_effect`` returns them (clean run p = 0 included)."""
    fig, (ax,) = new_figure()
    colours = (VARIANT, BASE, *OTHERS)
    for i, (label, runs) in enumerate(series.items()):
        rows = sorted((_as_dict(r) for r in runs), key=lambda r: r["p"])
        ps = [r["p"] for r in rows]
        top1 = [r["top1_last5"] for r in rows]
        ax.plot(ps, top1, marker="o", color=colours[i % len(colours)], label=label,
                linewidth=2.0 if i == 0 else 1.2, zorder=3 if i == 0 else 2)
        if i == 0:
            for p, v in zip(ps, top1, strict=True):
                ax.annotate(f"{v:.3f}", (p, v), xytext=(0, 6), textcoords="offset points",
                            ha="center", fontsize=7, color=colours[0])
            train = [r.get("train_top1") for r in rows]
            if all(t is not None for t in train):
                ax.plot(ps, train, linestyle=":", color=colours[0], linewidth=1.0,
                        label="the same runs: train top-1 on their own (poisoned) data")
    ax.axhline(chance, color="grey", linestyle="--", linewidth=0.8)
    ax.annotate(f"chance {chance:g}", (0.5, chance), xytext=(0, 3), textcoords="offset points",
                fontsize=7, color="grey", ha="center")
    ax.set_xlabel("poison fraction p (share of train images with the class filter)")
    ax.set_ylabel("clean val top-1 (mean of the last 5 epochs)")
    ax.set_title("CUDA on the demo data: clean accuracy after training on the CUDA copy")
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(0, 1.08)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 0.14), fontsize=8)
    return save_png(fig, path)


# --------------------------------------------------------------------------------------------
# Stylized demo (docs/results/stylize.md)
# --------------------------------------------------------------------------------------------

def stylize_setting(tag: str) -> str:
    """The x-axis label of a ``stylize_effect.py --tag TAG`` run (``""``: the recipe as
    shipped, 32 px)."""
    if not tag:
        return "32 px, seed 0"
    m = re.fullmatch(r"res(\d+)(?:-seed(\d+))?", tag)
    return f"{m.group(1)} px, seed {m.group(2) or 0}" if m else tag


@styled
def plot_stylize(results: Mapping[str, Mapping[str, Mapping]], path: str | os.PathLike) -> str:
    """Shape bias on the cue-conflict set (left) and clean val top-1 (right), demo vs
    demo-stylized, one group per setting. ``results``: ``{tag: run_effect(...) result}``
    (``experiments.stylize_effect``: ``{"demo": {...}, "demo-stylized": {...}}``)."""
    fig, (left, right) = new_figure(WIDE, ncols=2)
    tags = list(results)
    xs = range(len(tags))
    width = 0.38
    for ax, key, title in ((left, "shape_bias", "shape bias (cue-conflict, 360 stimuli)"),
                           (right, "top1", "clean val top-1 (200 images)")):
        for j, (name, colour) in enumerate((("demo", BASE), ("demo-stylized", VARIANT))):
            values = [results[t].get(name, {}).get(key) for t in tags]
            bars = ax.bar([x + (j - 0.5) * width for x in xs],
                          [0 if v is None else v for v in values], width,
                          color=colour, label=f"trained on {name}")
            _label_bars(ax, bars, values)
        ax.set_xticks(list(xs), [stylize_setting(t) for t in tags])
        ax.set_ylim(0, 1.05)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    left.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
    left.set_ylabel("shape hits / (shape + texture hits)")
    right.set_ylabel("top-1")
    right.axhline(0.1, color="grey", linestyle="--", linewidth=0.8)
    left.legend(loc="upper right", fontsize=8)
    fig.suptitle("Stylized demo (Fourier stand-in for AdaIN): shape bias vs clean accuracy")
    return save_png(fig, path)


# --------------------------------------------------------------------------------------------
# Reinforcement (docs/results/reinforce.md)
# --------------------------------------------------------------------------------------------

def reinforce_targets(targets: str) -> str:
    """One legend label per kind of targets, whether written by the script
    (``reinforced (rrc)``) or in the page (``reinforced, RRC + flip``)."""
    t = targets.lower()
    if "randaugment" in t or "ra-re" in t:
        return "reinforced, RRC + flip + RandAugment + RandomErasing"
    if "rrc" in t:
        return "reinforced, RRC + flip (the hard-label student's augmentation)"
    return targets


def reinforce_groups(result: Mapping) -> dict[str, dict[int, dict]]:
    """``{targets label: {epochs: {"mean", "min", "max", "n"}}}`` of a
    ``reinforce_effect.run_effect`` result: from its per-seed rows (``top1``), or from rows
    that are already summaries (``top1_mean``, ``top1_min``, ``top1_max``, ``seeds``: a
    page's table)."""
    groups: dict[str, dict[int, dict]] = {}
    per_seed: dict[tuple, list[float]] = {}
    for r in result["rows"]:
        label = reinforce_targets(r["targets"])
        if "top1_mean" in r:
            groups.setdefault(label, {})[int(r["epochs"])] = {
                "mean": r["top1_mean"], "min": r["top1_min"], "max": r["top1_max"],
                "n": r.get("seeds", 1)}
        else:
            per_seed.setdefault((label, int(r["epochs"])), []).append(r["top1"])
    for (label, epochs), v in per_seed.items():
        groups.setdefault(label, {})[epochs] = {"mean": sum(v) / len(v), "min": min(v),
                                                "max": max(v), "n": len(v)}
    return groups


@styled
def plot_reinforce(result: Mapping, path: str | os.PathLike) -> str:
    """Clean val top-1 of the student against its epochs, one line per kind of targets:
    the mean over seeds, bars from the lowest to the highest seed; the teacher's accuracy
    as a reference line. ``result``: ``experiments.reinforce_effect.run_effect``'s."""
    groups = reinforce_groups(result)
    fig, (ax,) = new_figure()
    colours = (BASE, VARIANT, *OTHERS)
    n = len(groups)
    epochs_all = sorted({e for g in groups.values() for e in g})
    step = min((b - a for a, b in zip(epochs_all, epochs_all[1:], strict=False)), default=10)
    for i, (label, by_epochs) in enumerate(groups.items()):
        epochs = sorted(by_epochs)
        shift = (i - (n - 1) / 2) * step * 0.04
        xs = [e + shift for e in epochs]
        mean = [by_epochs[e]["mean"] for e in epochs]
        err = [[by_epochs[e]["mean"] - by_epochs[e]["min"] for e in epochs],
               [by_epochs[e]["max"] - by_epochs[e]["mean"] for e in epochs]]
        seeds = sorted({by_epochs[e]["n"] for e in epochs})
        seeds_txt = "/".join(str(s) for s in seeds)
        ax.errorbar(xs, mean, yerr=err, marker="o", capsize=4, color=colours[i % len(colours)],
                    label=f"{label} ({seeds_txt} seed{'s' if seeds != [1] else ''})")
        for x, v in zip(xs, mean, strict=True):
            ax.annotate(f"{v:.3f}", (x, v), xytext=(7, -3), textcoords="offset points",
                        fontsize=7, color=colours[i % len(colours)])
    teacher = result.get("teacher", {}).get("top1")
    if teacher is not None:
        ax.axhline(teacher, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(f"teacher {teacher:.3f}", (epochs_all[-1] + step * 0.4, teacher),
                    xytext=(-2, 3), textcoords="offset points", fontsize=7, color="grey",
                    ha="right")
    ax.set_xticks(epochs_all)
    ax.set_xlim(epochs_all[0] - step * 0.4, epochs_all[-1] + step * 0.4)
    ax.set_ylim(0, max(0.8, (teacher or 0) + 0.1))
    ax.set_xlabel("student epochs")
    ax.set_ylabel("clean val top-1 (mean; bars: min-max over seeds)")
    ax.set_title("Reinforced demo: the same student on hard labels vs stored teacher targets")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save_png(fig, path)


# --------------------------------------------------------------------------------------------
# RDED (docs/results/distill.md)
# --------------------------------------------------------------------------------------------

def distill_setting(tag: str) -> str:
    """The panel title of a ``distill_effect.py`` result file's suffix (``""``: the page's
    main table; ``hard``: the hard-label ablation)."""
    return {"": "student relabelled by the observer (CutMix, KL at T = 20)",
            "hard": "ablation: hard labels, no CutMix"}.get(tag, tag)


@styled
def plot_distill(results: Mapping[str, Mapping], path: str | os.PathLike) -> str:
    """RDED vs random real images: clean val top-1 per IPC, one panel per result (the main
    run, then ablations); bars are means over seeds, dots every seed; the observer's own
    accuracy as a reference line. ``results``: ``{tag: distill_effect.run_effect result}``."""
    tags = list(results)
    fig, axes = new_figure(WIDE if len(tags) > 1 else FIGSIZE, ncols=len(tags))
    width = 0.38
    for ax, tag in zip(axes, tags, strict=True):
        result = results[tag]
        rows = [_as_dict(r) for r in result["rows"]]
        ipcs = sorted({r["ipc"] for r in rows})
        for j, (method, colour) in enumerate((("rded", VARIANT), ("random", BASE))):
            xs, means, seeds = [], [], []
            for k, ipc in enumerate(ipcs):
                v = [r["top1"] for r in rows if r["ipc"] == ipc and r["method"] == method]
                xs.append(k + (j - 0.5) * width)
                means.append(sum(v) / len(v) if v else None)
                seeds.append(v)
            n = max((len(v) for v in seeds), default=0)
            label = ("RDED" if method == "rded" else "random real images") + \
                (f" (mean of {n} seeds)" if n > 1 else " (1 seed)")
            bars = ax.bar(xs, [m or 0 for m in means], width, color=colour, label=label,
                          alpha=0.85)
            _label_bars(ax, bars, means, "{:.3f}", tops=[max(v, default=0) for v in seeds])
            for x, v in zip(xs, seeds, strict=True):
                if len(v) > 1:
                    ax.scatter([x] * len(v), v, s=10, color="black", zorder=3)
        observer = result.get("observer", {}).get("top1")
        if observer is not None:
            ax.axhline(observer, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(f"observer {observer:.3f}", (-0.5, observer), xytext=(2, 3),
                        textcoords="offset points", fontsize=7, color="grey")
        ax.axhline(0.1, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xticks(range(len(ipcs)), [f"IPC {i}" for i in ipcs])
        ax.set_xlim(-0.6, len(ipcs) - 0.4)
        ax.set_ylim(0, 0.85)
        ax.set_title(distill_setting(tag))
        ax.set_ylabel("clean val top-1")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("RDED vs random real images per class, same student (demo data; "
                 "dots: seeds, dotted: chance)")
    return save_png(fig, path)


# --------------------------------------------------------------------------------------------
# The recorded pages: their markdown tables read back into the scripts' dicts
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Table:
    """A markdown table of a page: its header cells, rows of cells, the last heading above
    it, the ``<!-- NAME -->`` block it sits in (``""``: none) and the paragraph above it."""

    header: list[str]
    rows: list[list[str]]
    heading: str
    block: str
    before: str


def md_tables(text: str) -> list[Table]:
    """Every GitHub-flavoured table of ``text``, in order."""
    tables, heading, block, para, last_para = [], "", "", [], ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif m := re.fullmatch(r"<!--\s*(/?)([\w:.-]+)\s*-->", line):
            block = "" if m.group(1) else m.group(2)
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(
                r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            header = _cells(line)
            j, rows = i + 2, []
            while j < len(lines) and lines[j].strip().startswith("|"):
                rows.append(_cells(lines[j]))
                j += 1
            tables.append(Table(header, rows, heading, block,
                                " ".join(para) if para else last_para))
            para, last_para = [], ""
            i = j
            continue
        if line and not line.startswith(("#", "<!--")):
            para.append(line)
        elif para:
            para, last_para = [], " ".join(para)
        i += 1
    return tables


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def number(cell: str) -> float:
    """The first number of a table cell (``**0.338** (0.300-0.385)`` -> 0.338; ``98%`` ->
    0.98)."""
    m = re.search(r"[-+]?\d+(?:\.\d+)?(%?)", cell.replace(",", ""))
    if not m:
        raise ValueError(f"no number in {cell!r}")
    v = float(m.group(0).rstrip("%"))
    return v / 100 if m.group(1) else v


def _find(tables: list[Table], first_cells: Sequence[str]) -> list[Table]:
    return [t for t in tables if [c.lower() for c in t.header[:len(first_cells)]]
            == [c.lower() for c in first_cells]]


#: Legend labels of the unlearnable page's sweep tables, by the heading above each.
UNLEARNABLE_SETTINGS = {
    "Results": "square 32 x 32 images, DEFAULT_OVERRIDES (the Results block)",
    "Non-square images (`--varied-aspect`)": "non-square images (stretched), DEFAULT_OVERRIDES",
    "Earlier setting: demo_cpu.yaml as is": "non-square images, demo_cpu.yaml as is",
}


def cuda_rows(table: Table) -> list[dict]:
    """A sweep table of the unlearnable page as ``EffectRun`` dicts (``train_loss`` and
    ``epochs`` are not in the table: None)."""
    rows = []
    for c in table.rows:
        poisoned, total = (int(x) for x in re.findall(r"\d+", c[2])[:2])
        rows.append({"dataset": c[0], "p": number(c[1]), "poisoned": poisoned,
                     "train_samples": total, "top1": number(c[3]), "top1_last5": number(c[4]),
                     "top5": number(c[6]), "train_top1": number(c[7]), "train_loss": None,
                     "epochs": None})
    return rows


def unlearnable_from_page(text: str) -> dict[str, list[dict]]:
    """``{setting label: [EffectRun dict, ...]}`` of every p-sweep table of
    docs/results/unlearnable.md, the measured block's first."""
    tables = _find(md_tables(text), ["training data", "p", "poisoned train images"])
    tables.sort(key=lambda t: t.block != "unlearnable-effect")
    return {UNLEARNABLE_SETTINGS.get(t.heading, t.heading): cuda_rows(t) for t in tables}


def stylize_from_page(text: str) -> dict[str, dict[str, dict]]:
    """``{tag: {dataset: {...}}}`` of docs/results/stylize.md's two tables (the first is the
    command without ``--tag``; the 64 px table's seed 0 rows are ``--tag res64``, seed N
    rows ``--tag res64-seedN``), in ``stylize_effect.run_effect``'s format."""
    out: dict[str, dict[str, dict]] = {}
    for t in _find(md_tables(text), ["trained on"]):
        cols = [h.lower() for h in t.header]
        has_seed = "seed" in cols
        px = re.search(r"(\d+)\s*px", t.before)
        for c in t.rows:
            seed = int(number(c[cols.index("seed")])) if has_seed else 0
            tag = "" if not px or px.group(1) == "32" else f"res{px.group(1)}"
            if tag and seed:
                tag += f"-seed{seed}"
            k = 2 if has_seed else 1
            ref = c[0]
            out.setdefault(tag, {})[ref.split("@")[0]] = {
                "dataset": ref, "top1": number(c[k]), "top1_tta": number(c[k + 1]),
                "shape_bias": number(c[k + 2]), "shape_hits": int(number(c[k + 3])),
                "texture_hits": int(number(c[k + 4])), "other": int(number(c[k + 5]))}
    return out


def reinforce_from_page(text: str) -> dict:
    """docs/results/reinforce.md's table in ``reinforce_effect.run_effect``'s format, with
    summary rows (``top1_mean``, ``top1_min``, ``top1_max``, ``seeds``: the page keeps no
    per-seed numbers) and the teacher's accuracy."""
    (t,) = _find(md_tables(text), ["student epochs", "targets"])
    rows = []
    for c in t.rows:
        lo, hi = (float(x) for x in re.search(r"\(([\d.]+)-([\d.]+)\)", c[3]).groups())
        rows.append({"epochs": int(number(c[0])), "targets": c[1], "seeds": int(number(c[2])),
                     "top1_mean": number(c[3]), "top1_min": lo, "top1_max": hi,
                     "top5": number(c[4])})
    m = re.search(r"Teacher: clean val top-1 (\d+(?:\.\d+)?)", text)
    return {"teacher": {"top1": float(m.group(1)) if m else None}, "rows": rows}


def distill_from_page(text: str) -> dict[str, dict]:
    """``{tag: result}`` of docs/results/distill.md (``""``: the three-seed table; ``hard``:
    the hard-label ablation, seed 0), rows as ``distill_effect.Row`` dicts (per-seed top-5
    is not in the page: None)."""
    m = re.search(r"Observer val top-1: (\d+(?:\.\d+)?)", text)
    observer = {"top1": float(m.group(1)) if m else None}
    out: dict[str, dict] = {}
    for t in _find(md_tables(text), ["set", "IPC"]):
        cols = [h.lower() for h in t.header]
        rows = []
        if any(h.startswith("val top-1 per seed") for h in cols):
            k = next(i for i, h in enumerate(cols) if h.startswith("val top-1 per seed"))
            seeds = [int(s) for s in re.findall(r"\d+", cols[k].split("seed", 1)[1])]
            for c in t.rows:
                for seed, v in zip(seeds, c[k].split(","), strict=True):
                    rows.append({"method": c[0], "ipc": int(number(c[1])),
                                 "factor": int(number(c[2])), "seed": seed,
                                 "train_images": int(number(c[3])),
                                 "own_texture": number(c[4]), "top1": number(v),
                                 "top5": None})
            out[""] = {"observer": observer, "rows": rows}
        else:
            k = cols.index("val top-1")
            for c in t.rows:
                rows.append({"method": c[0], "ipc": int(number(c[1])), "seed": 0,
                             "own_texture": number(c[2]), "top1": number(c[k]), "top5": None})
            out["hard"] = {"observer": observer, "rows": rows}
    return out


def figures_from_pages(results_dir: str | os.PathLike = RESULTS,
                       img_dir: str | os.PathLike | None = None) -> list[str]:
    """Draw every results page's figure from the numbers recorded in the page; return the
    PNG paths (``img_dir``: default ``RESULTS_DIR/img``)."""
    results_dir = Path(results_dir)
    img = Path(img_dir) if img_dir else results_dir / "img"

    def page(name: str) -> str:
        return (results_dir / f"{name}.md").read_text()

    return [plot_cuda_sweep(unlearnable_from_page(page("unlearnable")), img / "unlearnable.png"),
            plot_stylize(stylize_from_page(page("stylize")), img / "stylize.png"),
            plot_reinforce(reinforce_from_page(page("reinforce")), img / "reinforce.png"),
            plot_distill(distill_from_page(page("distill")), img / "distill.png")]


def load_results(root: str | os.PathLike, stem: str) -> dict[str, dict]:
    """``{tag: result}`` of every ``ROOT/STEM[-TAG].json`` an experiment left (``""``: no
    tag), sorted with the untagged one first."""
    import json

    found = {}
    for p in sorted(Path(root).glob(f"{stem}*.json")):
        tag = p.stem[len(stem):].lstrip("-")
        if p.stem == stem or p.stem.startswith(stem + "-"):
            found[tag] = json.loads(p.read_text())
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != "", kv[0])))


def has_matplotlib() -> bool:
    """Whether figures can be drawn (matplotlib is an optional extra: ``bench``, ``test``);
    says so on stderr when not."""
    import importlib.util
    import sys

    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed (pip install 'shardforge[bench]'): no figure",
              file=sys.stderr)
        return False
    return True


def try_plot(fn, *args) -> str | None:
    """``fn(*args)`` (a ``plot_*`` function: its last argument is the PNG path), or None
    when matplotlib is not installed or ``path`` is empty (figures are off)."""
    import sys

    if not args[-1] or not has_matplotlib():
        return None
    out = fn(*args)
    print(f"wrote {out}", file=sys.stderr)
    return out


def plot_argument(parser, name: str) -> None:
    """An experiment's ``--plot PATH`` option: where its results page's figure goes."""
    parser.add_argument("--plot", default=str(FIGURES[name]), metavar="PNG",
                        help=f"write the figure of docs/results/{name}.md here, from every "
                             f"result of this run's directory (default: "
                             f"{FIGURES[name].relative_to(REPO)}; '' for none)")
