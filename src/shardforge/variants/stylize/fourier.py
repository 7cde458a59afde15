"""A weights-free texture randomisation: Fourier amplitude swap. NOT the paper's method.

Stylized-ImageNet (Geirhos et al., ICLR 2019) uses AdaIN (:mod:`shardforge.variants.stylize.adain`),
whose weights cannot be downloaded here. This module is the stand-in selected with
``--method fourier``: per colour channel, the output keeps the *phase* spectrum of the
content image (which carries edges and therefore shape; Oppenheim & Lim, Proc. IEEE 1981)
and takes the *amplitude* spectrum of the style image (which carries much of the colour
and texture statistics), as in amplitude-phase recombination (Chen et al., ICCV 2021)::

    A = alpha * |F(style)| + (1 - alpha) * |F(content)|
    out = real(F^-1(A * exp(i * angle(F(content)))))

With ``alpha = 1`` the amplitude is the style's. Both images must have the same size
(Stylized-ImageNet crops both to 224 x 224). The result is clipped to [0, 255] and rounded
to uint8. Unlike AdaIN it does not synthesise the style's local texture in the content's
layout; it only replaces the spectrum's magnitudes, so treat results made with it as a
texture-randomised control, not as Stylized-ImageNet.
"""

from __future__ import annotations

import numpy as np


def swap_amplitude(content: np.ndarray, style: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Float64 image (H, W, C) with the content's per-channel phase and the blended amplitude
    ``alpha * |F(style)| + (1 - alpha) * |F(content)|`` (no clipping, no rounding)."""
    if content.shape != style.shape or content.ndim != 3:
        raise ValueError(f"content {content.shape} and style {style.shape} must both be "
                         "H x W x C arrays of the same shape (crop both to 224 x 224 first)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    fc = np.fft.fft2(content.astype(np.float64), axes=(0, 1))
    fs = np.fft.fft2(style.astype(np.float64), axes=(0, 1))
    amp = np.abs(fs) if alpha == 1.0 else alpha * np.abs(fs) + (1.0 - alpha) * np.abs(fc)
    # exp(i * angle(fc)) without dividing by zero: bins with |fc| == 0 take phase 0.
    mag = np.abs(fc)
    phase = np.divide(fc, mag, out=np.ones_like(fc), where=mag > 0)
    return np.fft.ifft2(amp * phase, axes=(0, 1)).real


def fourier_stylize(content: np.ndarray, style: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """uint8 (H, W, 3) content re-rendered with the style's amplitude spectrum (see module
    docstring); both inputs uint8 of the same shape."""
    out = swap_amplitude(content, style, alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
