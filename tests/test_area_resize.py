"""The INTER_AREA kernel (formats/_area_resize.c) and its wrapper formats.area.resize_area:
the same bytes as cv2.resize(..., INTER_AREA) on natural photos and noise, at thousands
of size pairs, on strided crops, and on every case the kernel leaves to OpenCV."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from shardforge.formats._area_resize import resize_area as kernel

from shardforge.formats.area import resize_area


def _photos() -> list[np.ndarray]:
    from skimage import data
    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]


def _cv2(src: np.ndarray, w: int, h: int) -> np.ndarray:
    return cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)


def test_same_bytes_as_opencv_on_photo_crops_and_noise() -> None:
    rng = np.random.default_rng(0)
    photos = _photos()
    compared = 0
    for trial in range(1200):
        if trial % 2:
            img = photos[trial % len(photos)]
            sh, sw = img.shape[:2]
            h, w = int(rng.integers(1, sh + 1)), int(rng.integers(1, sw + 1))
            y, x = int(rng.integers(0, sh - h + 1)), int(rng.integers(0, sw - w + 1))
            src = img[y:y + h, x:x + w]            # a strided view, as the loader's crops
        else:
            h, w = (int(v) for v in rng.integers(1, 500, 2))
            src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        dh, dw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        out = np.empty((dh, dw, 3), np.uint8)
        if kernel(src, out):
            compared += 1
            assert np.array_equal(out, _cv2(src, dw, dh)), (src.shape, dh, dw)
    assert compared > 1150          # almost every random pair is a non-integer downscale


@pytest.mark.parametrize(("src_hw", "dst_hw"), [
    ((200, 200), (160, 160)), ((375, 500), (192, 256)), ((480, 650), (378, 512)),
    ((1000, 3), (999, 2)), ((3, 4000), (1, 7)), ((1, 2001), (1, 2)), ((513, 1), (2, 1)),
    ((1024, 1024), (3, 1)), ((767, 1023), (256, 341)), ((300, 300), (300, 299)),
])
def test_same_bytes_at_edge_sizes(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> None:
    src = np.random.default_rng(1).integers(0, 256, (*src_hw, 3), dtype=np.uint8)
    out = np.empty((*dst_hw, 3), np.uint8)
    assert kernel(src, out) is True
    assert np.array_equal(out, _cv2(src, dst_hw[1], dst_hw[0]))


def test_saturated_values() -> None:
    for value in (0, 255):
        src = np.full((37, 53, 3), value, np.uint8)
        out = np.empty((20, 30, 3), np.uint8)
        assert kernel(src, out) and (out == value).all()


@pytest.mark.parametrize(("src_hw", "dst_hw"), [
    ((100, 100), (100, 100)),      # same size
    ((100, 100), (50, 25)),        # integer factors: OpenCV's resizeAreaFast
    ((100, 100), (150, 80)),       # an upscale on one axis: OpenCV interpolates bilinearly
    ((100, 100), (200, 200)),
])
def test_leaves_other_paths_to_opencv(src_hw: tuple[int, int],
                                      dst_hw: tuple[int, int]) -> None:
    src = np.random.default_rng(2).integers(0, 256, (*src_hw, 3), dtype=np.uint8)
    out = np.zeros((*dst_hw, 3), np.uint8)
    assert kernel(src, out) is False and not out.any()
    assert np.array_equal(resize_area(src, dst_hw[::-1]), _cv2(src, dst_hw[1], dst_hw[0]))


@pytest.mark.parametrize("src", [
    np.random.default_rng(3).random((90, 70, 3), np.float32),          # another dtype
    np.random.default_rng(3).integers(0, 256, (90, 70), dtype=np.uint8),  # grayscale
    np.random.default_rng(3).integers(0, 256, (90, 70, 4), dtype=np.uint8),  # RGBA
    np.random.default_rng(3).integers(0, 256, (90, 70, 3), dtype=np.uint8)[:, ::-1],  # flipped
    np.random.default_rng(3).integers(0, 256, (90, 140, 3), dtype=np.uint8)[:, ::2],  # strided
])
def test_wrapper_equals_opencv_for_any_array(src: np.ndarray) -> None:
    got = resize_area(src, (33, 41))
    assert got.dtype == src.dtype and np.array_equal(got, _cv2(src, 33, 41))


def test_wrapper_writes_into_out() -> None:
    src = _photos()[0][10:300, 20:250]
    out = np.empty((77, 61, 3), np.uint8)
    assert resize_area(src, (61, 77), out) is out
    assert np.array_equal(out, _cv2(src, 61, 77))
    odd = np.empty((61, 77, 3), np.uint8)           # a wrong-shaped out: OpenCV's behaviour
    assert np.array_equal(resize_area(src, (61, 77), odd), _cv2(src, 61, 77))


@pytest.mark.parametrize(("src", "dst"), [
    (np.zeros((10, 10), np.uint8), np.zeros((5, 5, 3), np.uint8)),
    (np.zeros((10, 10, 4), np.uint8), np.zeros((5, 5, 3), np.uint8)),
    (np.zeros((10, 10, 3), np.float32), np.zeros((5, 5, 3), np.uint8)),
    (np.zeros((10, 20, 3), np.uint8)[:, ::2], np.zeros((5, 5, 3), np.uint8)),
    (np.zeros((10, 10, 3), np.uint8), np.zeros((5, 5, 3), np.float32)),
    (np.zeros((10, 10, 3), np.uint8), np.zeros((5, 5), np.uint8)),
    (np.zeros((0, 10, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)),
])
def test_kernel_refuses_bad_buffers(src: np.ndarray, dst: np.ndarray) -> None:
    with pytest.raises(ValueError, match="resize_area"):
        kernel(src, dst)


def test_kernel_refuses_readonly_or_strided_output() -> None:
    src = np.zeros((10, 10, 3), np.uint8)
    readonly = np.zeros((7, 7, 3), np.uint8)
    readonly.flags.writeable = False
    for dst in (readonly, np.zeros((7, 14, 3), np.uint8)[:, ::2], b"\0" * 147):
        with pytest.raises((ValueError, TypeError, BufferError)):
            kernel(src, dst)


def test_threads_get_the_same_bytes() -> None:
    photo = _photos()[1]
    want = _cv2(photo, 171, 113)
    errors: list[str] = []

    def work() -> None:
        out = np.empty((113, 171, 3), np.uint8)
        for _ in range(30):
            resize_area(photo, (171, 113), out)
            if not np.array_equal(out, want):
                errors.append("differs")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
