"""Layer: train (below only the CLI). Training on shardforge datasets: recipes, soft
targets, the loop, checkpoints written, Ray Train.

Modules: ``config`` (YAML recipe -> dataclasses), ``schedule`` (LR and resolution),
``optim``, ``targets`` (hard / stored / teacher targets and their losses), ``teacher``
(building them, teachers loaded through :mod:`shardforge.models.reference`), ``data``
(dataset resolution and per-worker batches), ``metrics``, ``session`` (Ray Train or a local
torch.distributed run), ``loop`` (the per-worker training function), ``runner`` (launching
a run), ``experiment`` (a recipe trained or reused by content), ``evaluate``. Models and
checkpoints are :mod:`shardforge.models`.

May import every layer below (stream, catalog, variants, build, ...); only the CLI imports it.
"""
