"""CUDA unlearnable datasets (Sadasivan, Soltanolkotabi, Feizi, "CUDA: Convolution-based
Unlearnable Datasets", CVPR 2023), the ``unlearnable`` pipeline (method ``cuda``).

Paper -> files:

* Sec. 3.1 (class-wise random filters: weights ``U(0, pb)``, one position set to 1, the
  same ``k x k`` filter on every channel; ``k=3, pb=0.3`` for CIFAR, Sec. 4.1) and the
  reference's ``grayscale`` option -> ``transform.py`` (:func:`~.transform.class_filter`,
  the exact depthwise convolution :func:`~.transform.apply_cuda`, ``CudaTransform``);
* the private key that draws the filters (the paper's seed; HMAC-SHA256 here, so the
  filters depend on the key alone) -> ``key.py`` (midstates: the key never travels);
* the parameters, their per-resolution defaults (Sec. 4.1 for 32 px; ``k=9, pb=0.06`` at
  224 px from follow-up work), partial poisoning ``p`` (Sec. 4.3) and the registration ->
  ``spec.py``.

The measured effect on the demo data: docs/results/unlearnable.md
(``experiments/cuda_effect.py``).
"""
