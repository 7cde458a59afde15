"""Dataset reinforcement (Faghri et al., ICCV 2023, "Reinforce Data, Multiply Impact"):
stored augmentation parameters plus the teacher ensemble's top-K predictions per
augmentation, replayed at training time.

``spec.py``: the ``reinforce`` pipeline's parameters and registration; ``transform.py``:
the per-shard generation (Sec. 3: sample augmentations, run the teacher, keep top-K);
``engine.py``: the sharded job around it (plan, actors, reuse, guard, summary);
``teacher.py``: the teacher ensemble (mean softmax of its members, Sec. 3.1). The
augmentations themselves are :mod:`shardforge.augment`, shared with replay.
"""
