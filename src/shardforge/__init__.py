"""shardforge: image-classification datasets as FFCV .beton + WebDataset shards, built as
Ray jobs, with a catalog of versioned builds.

The one-call Python API (everything else: the subpackages, ``docs/architecture.md``)::

    import shardforge
    summary = shardforge.ingest("/data/pets", "/data/datasets/pets", max_res=256)
    ds = shardforge.open("pets")                 # a catalog name, NAME@vN or a location
    train = ds.split("train")                    # keys, labels, byte ranges per sample
    batches = ds.loader("train", 256)            # (uint8 images, int64 labels)

Both import the heavy parts (Ray, pyarrow) only when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shardforge.api import Dataset


def ingest(source: str, out: str, *, name: str | None = None, max_res: int | None = 256,
           jpeg_quality: int = 90, write_mode: str = "jpg", shard_size: int | None = None,
           home: str | None = None, register: bool = True, ray_address: str | None = None,
           **options: Any) -> dict:
    """Ingest ``source`` (class folders, WebDataset tars, parquet; local or a URL) into
    WebDataset shards + one .beton per split + a parquet index at ``out``, as
    ``shardforge ingest`` does, and return the build's summary.

    ``name`` defaults to ``out``'s last path component. ``max_res`` (None: keep sizes),
    ``jpeg_quality``, ``write_mode`` (``jpg``, ``raw``, ``proportion``, ``smart``) and
    ``shard_size`` mean what the CLI flags of the same names mean; ``options`` passes the
    other :class:`~shardforge.formats.image.ImageParams` fields (``compress_probability``,
    ``smart_threshold``, ``max_pixels``, ``keep_source_jpeg``) and :class:`~shardforge.sources.base.
    SourceOptions` fields (``default_split``, ``seed``, ``image_column``, ...). With
    ``register`` the build is registered in the catalog at ``home`` (default
    ``$SHARDFORGE_HOME`` or ``~/.shardforge``) as ``NAME@vN`` (the summary's
    ``"catalog"``). Runs on the Ray cluster at ``ray_address`` or a private local one.
    Raises ValueError for bad parameters (naming them) and
    :class:`~shardforge.build.job.JobFailed` when a fault not about one sample ends it.
    """
    import dataclasses
    import posixpath

    from shardforge.build.config import IngestConfig
    from shardforge.catalog.ingest import ingest as catalog_ingest
    from shardforge.formats.image import ImageParams
    from shardforge.sources.base import SourceOptions

    image_fields = {f.name for f in dataclasses.fields(ImageParams)}
    source_fields = {f.name for f in dataclasses.fields(SourceOptions)}
    unknown = sorted(set(options) - image_fields - source_fields)
    if unknown:
        raise ValueError(f"shardforge.ingest: unknown options {unknown}; image options are "
                         f"{sorted(image_fields)}, source options {sorted(source_fields)}")
    image = ImageParams(max_resolution=max_res, jpeg_quality=jpeg_quality,
                        write_mode=write_mode,
                        **{k: v for k, v in options.items() if k in image_fields})
    source_options = SourceOptions(shard_size=shard_size,
                                   **{k: v for k, v in options.items() if k in source_fields})
    config = IngestConfig(source=source, out=out, image=image, source_options=source_options,
                          name=name or posixpath.basename(out.rstrip("/")),
                          ray_address=ray_address)
    return catalog_ingest(config, home=home, register=register)


def open(ref: str, home: str | None = None) -> Dataset:  # noqa: A001 - the API's name
    """The dataset ``ref`` names (a catalog ``NAME[@vN]`` at ``home``, or a location with a
    ``summary.json``): a :class:`~shardforge.api.Dataset` with its classes, summary, per
    split the index (keys, labels, shard byte ranges, sha256; memory-mapped from the
    node's shared copy, :func:`~shardforge.stream.index_cache.open_indexed`) and
    ``loader(split, batch_size, ...)``. Train on it with ``jobs/train.py --data REF``.
    Raises :class:`~shardforge.layout.dataset.DatasetNotFoundError` naming both lookups."""
    from shardforge.api import Dataset
    from shardforge.catalog.lookup import resolve_dataset
    from shardforge.stream.index_cache import open_indexed

    return Dataset.of(open_indexed(resolve_dataset(ref, home)))


__all__ = ["ingest", "open"]
