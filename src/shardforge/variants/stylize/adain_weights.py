"""The canonical AdaIN weight files: their names, where they are, their sha256.

Kept apart from :mod:`shardforge.variants.stylize.adain` (the network, which needs torch) so that
the catalog's planning (:func:`shardforge.variants.stylize.spec.stylize_inputs`) digests the
files without importing torch.
"""

from __future__ import annotations

import os

from shardforge.storage import resolve

ENCODER_FILE = "vgg_normalised.pth"
DECODER_FILE = "decoder.pth"


class WeightsError(ValueError):
    """A weight file is missing, unreadable or does not have the canonical layout."""


def file_sha256(path: str) -> str:
    """Hex sha256 of a local file (the storage layer's streamed hash)."""
    return resolve(path).sha256()


def weights_sha256(weights_dir: str) -> dict[str, str]:
    """``{file name: sha256}`` of the two canonical files in ``weights_dir``."""
    return {name: file_sha256(weight_path(weights_dir, name))
            for name in (ENCODER_FILE, DECODER_FILE)}


def weight_path(weights_dir: str, name: str) -> str:
    """``weights_dir/name``; :class:`WeightsError` naming the file and the fix when it is missing."""
    path = os.path.join(os.path.expanduser(weights_dir), name)
    if not os.path.isfile(path):
        raise WeightsError(f"AdaIN weights: {path} not found; --weights must be a directory "
                           f"holding {ENCODER_FILE} and {DECODER_FILE} (the canonical AdaIN "
                           "files; they are not downloaded automatically), or use --method "
                           "fourier, which needs no weights")
    return path
