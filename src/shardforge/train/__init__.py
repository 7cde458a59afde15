"""Training on shardforge datasets: recipes, models, soft targets, checkpoints (issue 4).

Modules: ``config`` (YAML recipe -> dataclasses), ``schedule`` (LR and resolution),
``blurpool``, ``models``, ``optim``, ``targets`` (hard / stored / teacher targets and their
losses), ``data`` (dataset resolution and per-worker batches), ``checkpoint``, ``metrics``,
``session`` (Ray Train or a local torch.distributed run), ``loop`` (the per-worker training
function), ``runner`` (launching a run), ``evaluate``.
"""
