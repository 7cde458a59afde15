"""shardforge's three compiled modules, each hand-written for a measured reason given at
the top of its source:

- shardforge.formats._jpeg_region: a libjpeg partial decode for training crops (needs
  libjpeg's headers; Debian: libjpeg-dev, installed by scripts/setup.sh);
- shardforge.formats._area_resize: cv2.resize's INTER_AREA downscale, byte for byte and
  about 5x faster. -ffp-contract=off keeps every multiply and add separate, as OpenCV's
  are, so the floats (and bytes) are the same. It is written with SSE intrinsics, so it
  is built on x86-64 only; elsewhere (e.g. aarch64 GPU hosts) formats.area uses OpenCV;
- shardforge.stream._permute: numpy's Generator.permutation, the same values, with its
  memory reads prefetched (10-13 ns per row from 10k to 14M rows, numpy 11-36).

Everything else is in pyproject.toml; setuptools' pyproject table for extensions is
still experimental, so the extensions are declared here."""

import platform

from setuptools import Extension, setup

extensions = [Extension("shardforge.formats._jpeg_region",
                        sources=["src/shardforge/formats/_jpeg_region.c"],
                        libraries=["jpeg"], extra_compile_args=["-O2"]),
              Extension("shardforge.stream._permute",
                        sources=["src/shardforge/stream/_permute.c"],
                        extra_compile_args=["-O2"])]
if platform.machine().lower() in ("x86_64", "amd64"):
    extensions.append(Extension("shardforge.formats._area_resize",
                                sources=["src/shardforge/formats/_area_resize.c"],
                                libraries=["m"],
                                extra_compile_args=["-O3", "-fno-math-errno", "-ffp-contract=off"]))
setup(ext_modules=extensions)
