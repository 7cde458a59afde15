"""Layer: build. The sharded job engine: plan a source into shard specs, run them as Ray
tasks or actors (ingest, or a variant's transform over a parent's shards), verify and
reuse finished shards, commit both formats with the index and the summary. Also the
contracts plug-ins implement: :class:`~shardforge.build.transform.VariantSpec` /
``Transform``, :class:`~shardforge.build.pipeline.Pipeline` / ``Param`` and the pipeline
registry, input digests and secrets.

May import: sources, engine, models, augment, ops, layout and the foundation (storage,
formats, names, torch_files). Never the catalog, variants, streaming, training or the CLI:
whoever registers a build passes that in.
"""
