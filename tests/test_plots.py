"""The figures of docs/results/ and BENCHMARKS.md: every plotting function writes a PNG of
the fixed size, the recorded pages read back into the scripts' dicts, the unlearnable
page's block (with its figure link) is what ``cuda_effect.write_page`` writes, and every
image a page links exists."""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from experiments import plots

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bench_plots():
    spec = importlib.util.spec_from_file_location("bench_plots", REPO / "bench" / "plots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_size(path) -> tuple[int, int]:
    """Width, height from a PNG's IHDR chunk (the file must be a PNG)."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def expected(size) -> tuple[int, int]:
    return round(size[0] * plots.DPI), round(size[1] * plots.DPI)


def _no_software_text(path) -> bool:
    return b"Software" not in Path(path).read_bytes()


# --------------------------------------------------------------------------------------------
# Each plotting function on a small dict
# --------------------------------------------------------------------------------------------

def _cuda_run(p, top1, train=1.0):
    return {"dataset": f"d-p{p}", "p": p, "poisoned": int(800 * p), "train_samples": 800,
            "top1": top1, "top1_last5": top1, "top5": 1.0, "train_top1": train,
            "train_loss": 0.1, "epochs": 40}


def test_plot_cuda_sweep(tmp_path):
    pytest.importorskip("matplotlib")
    from experiments.cuda_effect import EffectRun

    runs = [EffectRun(**_cuda_run(p, v)) for p, v in ((0.0, 0.95), (0.5, 0.9), (1.0, 0.15))]
    out = plots.plot_cuda_sweep({"square": runs, "other": [_cuda_run(0.0, 0.9),
                                                           _cuda_run(1.0, 0.5)]},
                                tmp_path / "cuda.png")
    assert png_size(out) == expected(plots.FIGSIZE)
    assert _no_software_text(out)


def test_plot_stylize(tmp_path):
    pytest.importorskip("matplotlib")
    one = {"top1": 0.5, "top1_tta": 0.5, "shape_bias": 0.6, "shape_hits": 10,
           "texture_hits": 5, "other": 3, "dataset": "demo@v1"}
    results = {"": {"demo": one, "demo-stylized": {**one, "shape_bias": None}},
               "res64": {"demo": one, "demo-stylized": one}}
    out = plots.plot_stylize(results, tmp_path / "img" / "stylize.png")
    assert png_size(out) == expected(plots.WIDE)


@pytest.mark.parametrize("summarised", [False, True])
def test_plot_reinforce(tmp_path, summarised):
    pytest.importorskip("matplotlib")
    if summarised:   # a page's table: means and ranges only
        rows = [{"epochs": e, "targets": t, "seeds": 3, "top1_mean": 0.3, "top1_min": 0.2,
                 "top1_max": 0.4} for e in (10, 20) for t in ("hard labels",
                                                              "reinforced, RRC + flip")]
    else:            # reinforce_effect.run_effect's per-seed rows
        rows = [{"epochs": e, "seed": s, "targets": t, "top1": 0.2 + 0.01 * s, "top5": 0.8}
                for e in (10, 20) for s in (0, 1) for t in ("hard labels", "reinforced (rrc)",
                                                            "reinforced (ra-re)")]
    out = plots.plot_reinforce({"teacher": {"epochs": 40, "top1": 0.7}, "rows": rows},
                               tmp_path / "r.png")
    assert png_size(out) == expected(plots.FIGSIZE)
    groups = plots.reinforce_groups({"rows": rows})
    assert all(set(g) == {10, 20} for g in groups.values())


def test_plot_distill(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"method": m, "ipc": i, "factor": 1, "seed": s, "train_images": 10 * i,
             "own_texture": 0.8, "top1": 0.1 * i ** 0.5 + 0.01 * s, "top5": 0.9,
             "distill_s": 1.0, "train_s": 2.0}
            for m in ("rded", "random") for i in (1, 10) for s in (0, 1, 2)]
    one = plots.plot_distill({"": {"observer": {"top1": 0.7}, "rows": rows}},
                             tmp_path / "one.png")
    two = plots.plot_distill({"": {"observer": {"top1": 0.7}, "rows": rows},
                              "hard": {"observer": {"top1": 0.7}, "rows": rows[:4]}},
                             tmp_path / "two.png")
    assert png_size(one) == expected(plots.FIGSIZE)
    assert png_size(two) == expected(plots.WIDE)


def _ingest_results():
    """A results dict shaped as bench/ingest.py's (two resolutions, two shard sizes)."""
    def entry(runs, cpu, **extra):
        return {"runs": runs, "cpu": cpu, **extra}
    res = {}
    for r in ("256", "512"):
        res[r] = {"draft_share": 0.5,
                  "single_core": {"pil_full_decode": 700.0, "pil_draft_decode": 900.0,
                                  "ffcv_step": 350.0, "shardforge_step": 500.0},
                  "ffcv": entry([6.0, 5.0], [16.0, 15.0], bytes=1),
                  "wds": entry([5.5, 5.0], [15.0, 14.0], bytes=1),
                  "shardforge-auto": entry([4.0, 4.5], [12.0, 11.0], shard_size="auto",
                                           shards=32),
                  "shardforge-1000": entry([4.2], [12.5], shard_size="1000", shards=3)}
    return {"data": {"images": 3000}, "workers": 2, "repeats": 2, "resolutions": res}


def test_ingest_summary_and_plot(tmp_path):
    bp = _bench_plots()
    s = bp.ingest_summary(_ingest_results())
    g = s["groups"][0]
    assert g["name"] == "R = 256" and g["ideal"] == 700.0
    assert [m["label"] for m in g["methods"]] == [
        "FFCV DatasetWriter", "webdataset script", "shardforge (shard_size=auto, 32 shards)",
        "shardforge (shard_size=1000, 3 shards)"]
    assert g["methods"][2]["images_per_s"] == 3000 / 4.0
    assert g["methods"][2]["cpu"] == pytest.approx(1000 * 11.0 / 3000)
    pytest.importorskip("matplotlib")
    out = bp.plot_throughput(s, tmp_path / "ingest.png")
    assert png_size(out) == expected(plots.WIDE)


def test_loaders_summary_and_plot(tmp_path):
    bp = _bench_plots()
    methods = {k: {"runs": [1.5, 1.4], "cpu": [1.4, 1.6, 1.5], "images_per_s": 3000 / 1.4,
                   "best_s": 1.4, "cpu_ms_per_image": 0.5, "warmup_s": 2.0}
               for k in ("shardforge", "ffcv", "imagefolder")}
    results = {"samples": 3000, "methods": methods,
               "args": {"workers": 2, "size": 160, "batch_size": 128, "max_res": 256},
               "single_core": {"shardforge_step": 3000.0}}
    s = bp.loaders_summary(results)
    g = s["groups"][0]
    assert g["ideal"] == 6000.0
    assert g["methods"][0]["label"] == "shardforge WebDataset stream"
    assert g["methods"][0]["cpu"] == pytest.approx(0.5)   # median CPU ms per image
    pytest.importorskip("matplotlib")
    out = bp.plot_throughput(s, tmp_path / "loaders.png")
    assert png_size(out) == expected(plots.WIDE)


def test_save_png_is_deterministic(tmp_path):
    pytest.importorskip("matplotlib")
    results = {"": {"observer": {"top1": 0.7},
                    "rows": [{"method": "rded", "ipc": 1, "seed": 0, "top1": 0.2}]}}
    a = plots.plot_distill(results, tmp_path / "a.png")
    b = plots.plot_distill(results, tmp_path / "b.png")
    assert Path(a).read_bytes() == Path(b).read_bytes()


# --------------------------------------------------------------------------------------------
# The recorded pages, read back
# --------------------------------------------------------------------------------------------

def test_pages_read_back():
    res = REPO / "docs" / "results"
    cuda = plots.unlearnable_from_page((res / "unlearnable.md").read_text())
    first = next(iter(cuda.values()))   # the measured block's sweep comes first
    assert [r["p"] for r in first] == [0, 0.25, 0.5, 0.75, 1.0]
    assert len(cuda) >= 3 and all(len(v) == 5 for v in cuda.values())
    assert all(0 <= r["top1_last5"] <= 1 for v in cuda.values() for r in v)

    sty = plots.stylize_from_page((res / "stylize.md").read_text())
    assert "" in sty and all(set(v) == {"demo", "demo-stylized"} for v in sty.values())
    assert all(0 <= r["shape_bias"] <= 1 for v in sty.values() for r in v.values())

    rein = plots.reinforce_from_page((res / "reinforce.md").read_text())
    assert rein["teacher"]["top1"] is not None
    groups = plots.reinforce_groups(rein)
    assert "hard labels" in groups and len(groups) == 3
    assert all(g["min"] <= g["mean"] <= g["max"] for v in groups.values() for g in v.values())

    dist = plots.distill_from_page((res / "distill.md").read_text())
    assert set(dist) == {"", "hard"}
    assert {(r["method"], r["ipc"]) for r in dist[""]["rows"]} == {
        (m, i) for m in ("rded", "random") for i in (1, 10)}


def test_benchmark_sections_read_back():
    bp = _bench_plots()
    md = (REPO / "BENCHMARKS.md").read_text()
    ingest = bp.ingest_summary_from_section(bp.section_text(md, "ingest"))
    loaders = bp.loaders_summary_from_section(bp.section_text(md, "loaders"))
    for s in (ingest, loaders):
        labels = [m["label"].lower() for g in s["groups"] for m in g["methods"]]
        assert any(x.startswith("shardforge") for x in labels)
        assert any(x.startswith("ffcv") for x in labels)
        assert all(g["ideal"] > 0 for g in s["groups"])


def test_unlearnable_block_is_what_write_page_writes(tmp_path):
    """The page's measured block, figure link included, is exactly what
    ``cuda_effect.write_page`` writes for its table's runs (but the date line)."""
    pytest.importorskip("matplotlib")
    from experiments import cuda_effect

    page = REPO / "docs" / "results" / "unlearnable.md"
    text = page.read_text()
    block = re.search(r"<!-- unlearnable-effect -->.*?<!-- /unlearnable-effect -->", text,
                      re.S).group(0)
    command = re.search(r"- Command: `(.*?)`", block).group(1)
    runs = [cuda_effect.EffectRun(**r) for r in next(iter(
        plots.unlearnable_from_page(text).values()))]
    copy = tmp_path / "unlearnable.md"
    shutil.copy(page, copy)
    args = SimpleNamespace(varied_aspect=False, val="heldout", resolution=32,
                           config=cuda_effect.DEFAULT_CONFIG,
                           overrides=cuda_effect.DEFAULT_OVERRIDES)
    cuda_effect.write_page(str(copy), cuda_effect.effect_table(runs), command, args, runs)

    def without_date(s: str) -> str:
        return re.sub(r"^- Date: .*$", "- Date:", s, flags=re.M)

    assert without_date(copy.read_text()) == without_date(text)
    assert png_size(tmp_path / "img" / "unlearnable.png") == expected(plots.FIGSIZE)


# --------------------------------------------------------------------------------------------
# Every linked image exists
# --------------------------------------------------------------------------------------------

IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _pages() -> list[Path]:
    return sorted({*(REPO / "docs").rglob("*.md"), REPO / "BENCHMARKS.md", REPO / "README.md"})


def test_every_image_link_points_to_a_file():
    links = 0
    missing = []
    for page in _pages():
        for target in IMAGE_LINK.findall(page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            links += 1
            if not (page.parent / target.split("#")[0]).is_file():
                missing.append(f"{page.relative_to(REPO)}: {target}")
    assert not missing, missing
    assert links >= 6   # the four results pages and the two BENCHMARKS.md sections at least


def test_every_figure_is_linked():
    linked = {(page.parent / t).resolve() for page in _pages()
              for t in IMAGE_LINK.findall(page.read_text())}
    figures = [*(REPO / "docs" / "results" / "img").glob("*.png"),
               *(REPO / "docs" / "bench").glob("*.png")]
    assert figures
    assert [str(f.relative_to(REPO)) for f in figures if f.resolve() not in linked] == []
