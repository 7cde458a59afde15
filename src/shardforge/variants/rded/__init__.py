"""RDED dataset distillation (Sun, Shi, Yu, Lin, "On the Diversity and Realism of Distilled
Dataset", CVPR 2024), the ``distill`` pipeline (method ``rded``, or ``random``: the
baseline the paper compares against).

Paper -> files:

* Sec. 3 / Alg. 1 (candidate crops per real image, scored by the observer's loss, the
  most realistic kept and stitched ``factor x factor`` per output image) ->
  ``transform.py``;
* the observer model (loaded with its class order checked) ->
  :mod:`shardforge.models.reference`;
* the parameters with the paper's defaults (Sec. 4.1: ``factor`` 2 at 224 px, 1 at
  32-64 px; ``mipc`` 300, ``num_crop`` 5), the observer as an input, registration ->
  ``spec.py``.

The student recipe is ``jobs/configs/*rded*.yaml``; the measured effect on the demo data:
docs/results/distill.md (``experiments/distill_effect.py``).
"""
