"""Layer: models (beside augment and ops). Model architectures (``small_cnn``, torchvision,
timm), BlurPool, the training checkpoint format, and model references (a checkpoint, or
``ARCH=WEIGHTS`` plus a class order) loaded with their class order checked.

May import layout and the foundation; nothing that builds, streams or trains.
"""
