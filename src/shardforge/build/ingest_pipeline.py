"""The ``ingest`` pipeline for cards: a source (or a parent's WebDataset shards) -> shards.

Card parameters mirror ``shardforge ingest`` flags (``max_res: null`` is ``--no-resize``,
``seed: null`` is ``--no-shuffle``). From a parent dataset, the parent's WebDataset tars
are the source (labels and keys kept; one output shard per parent tar).
"""

from __future__ import annotations

from shardforge.build.pipeline import BuildRequest, Param, Pipeline, register
from shardforge.formats.beton import DEFAULT_PAGE_SIZE, check_page_size
from shardforge.formats.image import DEFAULT_MAX_PIXELS, WRITE_MODES, ImageParams
from shardforge.sources import KINDS
from shardforge.sources.base import SourceOptions

PARAMS = {
    "max_res": Param((int,), 256, nullable=True,
                     help="longest side in px; null keeps the source resolution"),
    "jpeg_quality": Param((int,), 90, help="1..100"),
    "reencode": Param((bool,), False, help="re-encode every image (false: a fitting source "
                                           "JPEG not above jpeg_quality is kept as it is)"),
    "write_mode": Param((str,), "jpg", choices=WRITE_MODES, help="FFCV write mode"),
    "compress_probability": Param((float,), 0.5, help="JPEG share for write_mode proportion"),
    "smart_threshold": Param((int,), None, nullable=True,
                             help="raw bytes above which write_mode smart stores JPEG"),
    "max_pixels": Param((int,), DEFAULT_MAX_PIXELS, help="larger images are rejected"),
    "shard_size": Param((int,), None, nullable=True,
                        help="samples per output shard; null: about 32 per split, 64..1000"),
    "seed": Param((int,), 0, nullable=True,
                  help="shuffle seed for class-folder sources; null keeps folder order"),
    "split": Param((str,), "train", help="split name for sources without splits"),
    "image_column": Param((str,), "image", help="parquet image column"),
    "label_column": Param((str,), "label", help="parquet label column"),
    "key_column": Param((str,), None, nullable=True, help="parquet sample-id column"),
    "source_kind": Param((str,), None, choices=KINDS, nullable=True,
                         help="override source detection"),
    "page_size": Param((int,), DEFAULT_PAGE_SIZE, help=".beton page size (power of two)"),
    "strict": Param((bool,), False, help="any rejected input fails the build"),
}


def _image(p: dict) -> ImageParams:
    return ImageParams(max_resolution=p["max_res"], jpeg_quality=p["jpeg_quality"],
                       write_mode=p["write_mode"],
                       compress_probability=float(p["compress_probability"]),
                       smart_threshold=p["smart_threshold"], max_pixels=p["max_pixels"],
                       keep_source_jpeg=not p["reencode"])


def _options(p: dict) -> SourceOptions:
    if p["shard_size"] is not None and p["shard_size"] < 1:
        raise ValueError(f"shard_size {p['shard_size']} must be >= 1")
    return SourceOptions(default_split=p["split"], shard_size=p["shard_size"], seed=p["seed"],
                         image_column=p["image_column"], label_column=p["label_column"],
                         key_column=p["key_column"])


def check(params: dict) -> None:
    """Raise ValueError naming the parameter when the combination is invalid."""
    _image(params)
    _options(params)
    check_page_size(params["page_size"])


def build(request: BuildRequest) -> dict:
    """Ingest the card's source (or the parent's WebDataset tars) into ``request.out``."""
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest
    from shardforge.storage import resolve

    p, parent = request.params, request.parent
    if parent is not None:
        source, kind = resolve(parent.location).join("wds").url, "wds"
    else:
        source, kind = request.source_url, p["source_kind"]
    if source is None:
        raise ValueError(f"card {request.name} has no source to ingest")
    config = IngestConfig(source=source, name=request.name, out=request.out, image=_image(p),
                          source_options=_options(p), source_kind=kind,
                          page_size=p["page_size"], strict=p["strict"],
                          ray_address=request.ray_address)
    summary = run_ingest(config)
    if parent is not None and not summary.get("classes"):
        summary = {**summary, "classes": list(parent.classes)}  # wds tars carry labels only
    return summary


PIPELINE = register(Pipeline(
    name="ingest",
    summary="a source (class folders, WebDataset, parquet, ImageNet archives) or a parent's "
            "shards -> .beton + WebDataset shards",
    params=PARAMS,
    sources=("path", "demo", "dataset"),
    check=check,
    build=build,
))
