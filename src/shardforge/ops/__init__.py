"""Layer: ops (beside models and augment). Small numeric operations shared by generation,
training and evaluation, one module each: ImageNet normalisation (:mod:`.normalize`),
mixed precision (:mod:`.autocast`), soft-target densification (:mod:`.soft_targets`).
Imports torch and numpy only; nothing of shardforge above the foundation.
"""
