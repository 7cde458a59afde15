"""Layer: view (above catalog and stream, beside train; below cli). ``shardforge view``: a
local, read-only web app over a catalog home: the catalog with its lineage graph, each
dataset's statistics and rejects, class grids, and sample pages that put a key next to the
same key in every related build. Server-rendered (Starlette + Jinja2, served by uvicorn).

Nothing is written: the catalog is opened read-only, images come from the shards by byte
range (:mod:`shardforge.layout.reader`) and live only in in-memory caches. May import every
layer below it (catalog, stream, variants, build, layout, ...); only the CLI imports it.

Modules: :mod:`~shardforge.view.model` (the catalog as pages see it),
:mod:`~shardforge.view.datasets` (a build's index stats, key lookups, rejects),
:mod:`~shardforge.view.images` (thumbnails, stored bytes, placeholders),
:mod:`~shardforge.view.charts` (inline SVG), :mod:`~shardforge.view.extras` (what each
variant stores about a sample), :mod:`~shardforge.view.pages` (each page's data),
:mod:`~shardforge.view.app` (routes and error pages).
"""
