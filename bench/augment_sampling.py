"""Time drawing ImageNet+ augmentation records: 400 per image, with and without ml-dr's
mixing (each mixing record also draws its partner's own view), per image on one core.

    PYTHONPATH=src python bench/augment_sampling.py [--images 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from shardforge.augment import AugPolicy, image_rng, sample_params


def per_image_ms(policy: AugPolicy, images: int, sizes: np.ndarray) -> float:
    """Mean wall milliseconds of one image's 400 records (best of 3 passes)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(images):
            sample_params(policy, 500, 375, image_rng(0, f"k{i}"), 400,
                          partner_sizes=sizes if policy.mixing else None)
        best = min(best, (time.perf_counter() - start) / images * 1000)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=50)
    args = p.parse_args(argv)
    sizes = np.array([(500, 375)] * 1000)        # a shard of 1,000 partners
    for name, policy in (("RRC + flip + RA + RE", AugPolicy()),
                         ("+ MixUp 0.5 + CutMix 0.5", AugPolicy(mixup_p=0.5, cutmix_p=0.5))):
        print(f"{name}: {per_image_ms(policy, args.images, sizes):.2f} ms per image "
              "(400 records)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
