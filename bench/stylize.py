"""Benchmark stylization: images/s of the ``stylize`` variant's transform vs the AdaIN
network's forward pass alone, on the same batches.

* ``transform (cold styles)``: :class:`shardforge.variants.stylize.transform.StylizeTransform` on
  decoded demo images: Resize + CenterCrop, seeded style assignment, reading and
  preprocessing each needed style and its relu4_1 statistics, AdaIN forward, uint8 out;
* ``transform (warm styles)``: the same call again (style statistics cached per worker);
* ``forward, style encoded per image``: encoder(content) + encoder(style) + AdaIN + decoder
  on tensors already on the device (what the reference loop runs per image, batched);
* ``forward, cached style stats``: encoder(content) + AdaIN + decoder;
* ``fourier transform``: the weights-free method's transform on the same images.

AdaIN weights are randomly initialised in the canonical layout (the speed does not depend
on the values). Device: CUDA (AMP ``--amp``) when available, else CPU. Each measurement is
repeated ``--repeats`` times; the best counts. Results go to the ``stylize`` section of
``--out-md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PACKAGES = ("shardforge", "torch", "numpy", "pillow", "opencv-python-headless")
SECTION = "stylize"


def demo_images(n: int) -> list:
    """``n`` decoded demo val images (Decoded), keys like a dataset's."""
    from shardforge.build.transform import Decoded
    from shardforge.sources.demo import DemoSpec, render_demo_image

    spec = DemoSpec(min_side=256, max_side=400)
    out = []
    for i in range(n):
        cls = spec.classes[i % len(spec.classes)]
        img, _ = render_demo_image(spec, "val", cls, i)
        out.append(Decoded(f"{cls}_{i:06d}", i % len(spec.classes), np.asarray(img)))
    return out


def timed(fn, repeats: int) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs (CUDA synchronised)."""
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return common.best(times)


def run(args) -> dict:
    from shardforge.formats.image import resize_center_crop
    from shardforge.ops.autocast import autocast
    from shardforge.variants.stylize import adain as A
    from shardforge.variants.stylize.styles import BUILTIN_DEMO, load_style_set, read_style
    from shardforge.variants.stylize.transform import (
        StylizeConfig,
        StylizeTransform,
        assign_style,
    )

    weights = tempfile.mkdtemp(prefix="bench-adain-")
    A.save_random_weights(weights)
    styles = load_style_set(BUILTIN_DEMO)
    samples = demo_images(args.images)
    cfg = StylizeConfig(method="adain", weights=weights, resize=args.resize, crop=args.crop,
                        amp=args.amp, batch_size=args.batch_size)
    n = len(samples)
    res: dict[str, float] = {}

    def cold() -> None:
        StylizeTransform(cfg, styles.styles)(samples, "train")

    tr = StylizeTransform(cfg, styles.styles)
    net = tr.net
    device = next(net.parameters()).device
    tr(samples, "train")                                     # warm-up, fills the cache
    res["transform, cold style cache (incl. network load)"] = n / timed(cold, args.repeats)
    res["transform, warm style cache"] = n / timed(lambda: tr(samples, "train"), args.repeats)

    contents = np.stack([resize_center_crop(s.pixels, args.resize, args.crop) for s in samples])
    ids = [assign_style(0, s.key, len(styles.styles)) for s in samples]
    style_px = np.stack([read_style(styles.styles[i]) for i in ids])
    c_batches = [A.to_tensor(contents[i:i + args.batch_size], device)
                 for i in range(0, n, args.batch_size)]
    s_batches = [A.to_tensor(style_px[i:i + args.batch_size], device)
                 for i in range(0, n, args.batch_size)]
    with torch.inference_mode():
        stats = [net.style_stats(s) for s in s_batches]

    def forward_full() -> None:
        with torch.inference_mode(), autocast(device, A.amp_dtype(device, args.amp)):
            for c, s in zip(c_batches, s_batches, strict=True):
                net(c, *net.style_stats(s))

    def forward_cached() -> None:
        with torch.inference_mode(), autocast(device, A.amp_dtype(device, args.amp)):
            for c, (m, sd) in zip(c_batches, stats, strict=True):
                net(c, m, sd)

    forward_cached()                                         # warm-up
    res["forward, style encoded per image"] = n / timed(forward_full, args.repeats)
    res["forward, cached style stats"] = n / timed(forward_cached, args.repeats)
    four = StylizeTransform(StylizeConfig(method="fourier", resize=args.resize,
                                          crop=args.crop), styles.styles)
    four(samples, "train")
    res["fourier transform (weights-free, CPU)"] = n / timed(lambda: four(samples, "train"),
                                                             args.repeats)
    return {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
            "threads": torch.get_num_threads(), "rates": res}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--amp", default="fp16", choices=("fp16", "bf16", "off"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out-md", default=os.path.join(os.path.dirname(__file__), "..",
                                                    "BENCHMARKS.md"))
    args = p.parse_args()
    r = run(args)
    rows = [(name, f"{rate:.2f}") for name, rate in r["rates"].items()]
    body = "\n".join([
        "## Stylization (AdaIN) vs the network's forward pass",
        "",
        *common.preamble(common.command_line(), PACKAGES),
        f"- Device: {r['device']} ({r['threads']} torch threads); {args.images} demo images, "
        f"Resize({args.resize}) -> CenterCrop({args.crop}), batch {args.batch_size}, "
        f"AMP {args.amp} on GPU only; AdaIN weights randomly initialised (canonical layout); "
        f"best of {args.repeats}",
        "",
        *common.md_table(("what", "images/s"), rows),
        "",
        "The transform adds, per shard, the content resize/crop, the style reads and their "
        "statistics (cold cache) and the uint8 conversions around the same forward pass. "
        "CPU numbers say little about the GPU actors the job uses on a cluster: rerun this "
        "script on a GPU node.",
    ])
    common.publish(body, args.out_md, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
