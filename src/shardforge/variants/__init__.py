"""Dataset variants: a parent dataset's samples through a transform into a new dataset.

A variant is one small module: a batch-to-batch transform plus its parameters
(:class:`~shardforge.variants.base.VariantSpec`), run by the ingest engine over the parent's
shards (:func:`~shardforge.variants.run.run_variant`).
"""
