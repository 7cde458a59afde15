"""Dataset reinforcement (Faghri et al., ICCV 2023, "Reinforce Data, Multiply Impact"):
stored augmentation parameters plus the teacher ensemble's top-K predictions per
augmentation, replayed at training time.

``spec.py``: the ``reinforce`` pipeline's parameters and registration; ``engine.py``: the
generation (Sec. 3: sample augmentations, run the teacher, keep top-K); ``teacher.py``: the
teacher ensemble (mean softmax of its members, Sec. 3.1).
"""
