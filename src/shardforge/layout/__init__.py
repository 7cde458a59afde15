"""Layer: layout. The on-disk dataset every other layer shares: its file names (summary,
index, tars, .beton), the summary, the index, opening a dataset by its location, and
reading sample bytes by byte range.

May import only the foundation (storage, formats, names). Resolving a catalog name to a
location is the catalog's job, above.
"""
