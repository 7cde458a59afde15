"""Seeded fuzz regression of the image decoder (issue #13): mutated files of 12 formats
through ``process_image`` (which runs ``decode_rgb``); nothing but :class:`RejectedImage`
may escape, and no call may take more than 5 s (a per-call alarm raises inside Python
code; ``faulthandler`` ends the process if a C decoder hangs, so a hang fails the run).

Seeds are small crops of scikit-image's natural sample photos. 1,000 mutations in the
default run, 20,000 in the slow one (``-m slow``).
"""

from __future__ import annotations

import faulthandler
import io
import random
import signal
import time
import warnings

import numpy as np
import pytest
from PIL import Image, features

from shardforge.formats.image import ImageParams, RejectedImage, process_image

CALL_LIMIT_S = 5.0
# Small: a mutated header may claim any size up to the limit, and each such call decodes.
PARAMS = ImageParams(max_resolution=32, max_pixels=4_000_000)


class CallTimeout(Exception):
    """A single decode ran past CALL_LIMIT_S."""


def _photo(h: int, w: int, which: str) -> np.ndarray:
    import cv2
    from skimage import data

    img = getattr(data, which)()[:, :, :3]
    return np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))


def seed_files() -> dict[str, bytes]:
    """One small natural image per format (JPEG 2000 and WebP when PIL has them)."""
    rgb = _photo(24, 32, "chelsea")
    img = Image.fromarray(rgb)
    out: dict[str, bytes] = {}

    def save(name: str, im: Image.Image, fmt: str, **kw) -> None:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    save("jpeg", img, "JPEG", quality=85)
    save("jpeg_progressive", img, "JPEG", quality=85, progressive=True)
    save("png", img, "PNG")
    save("png16", Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257), "PNG")
    save("gif", img.convert("P"), "GIF")
    save("tiff", img, "TIFF", compression="tiff_lzw")
    exif = img.getexif()
    exif[0x0112] = 6            # orientation: rotate, so the EXIF path runs
    exif[0x010F] = "camera"
    save("tiff_exif", img, "TIFF", exif=exif)
    save("bigtiff_exif", img, "TIFF", exif=exif, big_tiff=True)
    save("jpeg_exif", img, "JPEG", quality=85, exif=exif)
    save("bmp", img, "BMP")
    save("ppm", img, "PPM")
    save("ico", img, "ICO", sizes=[(24, 24)])
    save("tga", img, "TGA")
    save("pcx", img, "PCX")
    save("sgi", img, "SGI")
    if features.check("webp"):
        save("webp", img, "WEBP", quality=80)
    if features.check("jpg_2000"):
        save("jpeg2000", img, "JPEG2000")
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-6 random edits: byte flips, extreme integer fields, deletions, insertions, cuts."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not b:
            break
        pos = rng.randrange(len(b))
        op = rng.random()
        if op < 0.35:
            b[pos] ^= 1 << rng.randrange(8)
        elif op < 0.55:
            b[pos] = rng.randrange(256)
        elif op < 0.75:
            width = rng.choice((2, 4, 8))
            value = rng.choice((0, 1, 2 ** (8 * width) - 1, 2 ** (8 * width - 1),
                                rng.randrange(2 ** (8 * width))))
            b[pos:pos + width] = value.to_bytes(width, rng.choice(("little", "big")))
        elif op < 0.85:
            del b[pos:pos + rng.randint(1, 32)]
        elif op < 0.95:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            del b[pos:]
    return bytes(b)


def _alarm(signum, frame):
    raise CallTimeout(f"decode ran past {CALL_LIMIT_S} s")


def run_fuzz(n: int, seed: int) -> dict:
    """Run ``n`` seeded mutations; return counts, escapes and the slowest call."""
    seeds = seed_files()
    names = sorted(seeds)
    rng = random.Random(seed)
    escapes: list[tuple[str, int, str]] = []
    stats = {"calls": 0, "rejected": 0, "accepted": 0, "slowest_s": 0.0,
             "formats": len(names)}
    previous = signal.signal(signal.SIGALRM, _alarm)
    # A C decoder stuck without returning to Python: dump stacks and end the process.
    faulthandler.dump_traceback_later(CALL_LIMIT_S * 6, repeat=True, exit=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(n):
                name = names[i % len(names)]
                data = mutate(seeds[name], rng)
                started = time.perf_counter()
                signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT_S)
                try:
                    process_image(data, f"k{i}", PARAMS)
                    stats["accepted"] += 1
                except RejectedImage:
                    stats["rejected"] += 1
                except Exception as exc:   # the regression: anything else escaped
                    escapes.append((name, i, f"{type(exc).__name__}: {exc}"))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    faulthandler.dump_traceback_later(CALL_LIMIT_S * 6, repeat=True,
                                                      exit=True)
                stats["calls"] += 1
                stats["slowest_s"] = max(stats["slowest_s"], time.perf_counter() - started)
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)
    stats["escapes"] = escapes
    return stats


def test_seed_files_decode():
    """Every seed is a valid image of its format (so mutations start from real files)."""
    seeds = seed_files()
    assert len(seeds) >= 15
    for name, data in seeds.items():
        img = process_image(data, name, PARAMS)
        assert max(img.width, img.height) == (24 if name == "ico" else 32), name  # ICO: 24 px


def test_known_escapes_are_rejects():
    """Files that escaped decode_rgb on main: the TIFF the 20,000-mutation run found
    (TypeError) and a crafted BigTIFF with a LONG8 strip offset of 2**64 - 1
    (OverflowError)."""
    from test_reliability_samples import FUZZED_TIFF, tiff_overflow

    with pytest.raises(RejectedImage, match="undecodable image: TypeError"):
        process_image(FUZZED_TIFF, "k", PARAMS)
    with pytest.raises(RejectedImage, match="undecodable image: OverflowError"):
        process_image(tiff_overflow(), "k", PARAMS)


def test_fuzz_1000_mutations():
    stats = run_fuzz(1000, seed=13)
    assert stats["calls"] == 1000
    assert stats["escapes"] == [], stats["escapes"][:5]
    assert stats["slowest_s"] <= CALL_LIMIT_S
    assert stats["rejected"] > 100 and stats["accepted"] > 100, stats   # both paths ran


@pytest.mark.slow
def test_fuzz_20000_mutations():
    stats = run_fuzz(20_000, seed=1313)
    print({k: v for k, v in stats.items() if k != "escapes"})
    assert stats["calls"] == 20_000
    assert stats["escapes"] == [], stats["escapes"][:5]
    assert stats["slowest_s"] <= CALL_LIMIT_S


def test_loader_decode_of_mutated_jpegs_raises_only_decode_errors():
    """The training loader's decode (``decode_crop``: simplejpeg into a reused scratch
    buffer at full size, OpenCV for DCT-reduced and declined data) on 2,000 mutated
    natural-photo JPEGs: a sample either decodes to the stored size or raises
    ``DecodeError`` / ``cv2.error``, which the stream turns into a skipped sample."""
    import cv2

    from shardforge.formats.decode import DecodeError, decode_crop

    rgb = _photo(96, 128, "astronaut")
    seeds = []
    for progressive in (False, True):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=90, progressive=progressive)
        seeds.append(buf.getvalue())
    rng = random.Random(7)
    out = np.empty((32, 32, 3), np.uint8)
    scratch = np.empty(96 * 128 * 3, np.uint8)
    counts = {"decoded": 0, "refused": 0}
    for i in range(2000):
        data = mutate(seeds[i % 2], rng)
        box = (0, 0, 96, 128) if i % 3 else (10, 20, 40, 40)   # whole image, or a crop
        try:
            decode_crop(data, False, 128, 96, box, out, flip=bool(i % 2),
                        dct=bool(i % 4 == 1), scratch=scratch if i % 5 else None)
            counts["decoded"] += 1
        except (DecodeError, cv2.error):
            counts["refused"] += 1
    assert counts["decoded"] > 100 and counts["refused"] > 100, counts
