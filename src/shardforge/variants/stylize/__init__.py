"""Stylized-ImageNet (Geirhos et al., "ImageNet-trained CNNs are biased towards texture;
increasing shape bias improves accuracy and robustness", ICLR 2019) over any parent dataset.

Where the paper is in this package:

* Sec. 2.3 (Stylized-ImageNet: every training image re-rendered in the style of a random
  painting, AdaIN, ``alpha = 1``) -> ``transform.py``: the content crop (Resize 256 ->
  CenterCrop 224), the seeded per-key style assignment and :class:`StylizeTransform`;
* Huang & Belongie, ICCV 2017 (AdaIN: the VGG-19 encoder to ``relu4_1``, the decoder, the
  channel-statistics swap), as Geirhos et al. Appendix A.2 use it -> ``adain.py`` (the
  network, batching, AMP via :mod:`shardforge.ops.autocast`) and ``adain_weights.py``
  (the canonical weight files, their sha256; no torch);
* Appendix A.1 (the style images: Painter by Numbers, RGB, >= 224 px) -> ``styles.py``
  (listing, validation, preprocessing, the procedural ``builtin:demo`` set);
* not in the paper: ``fourier.py``, a weights-free amplitude swap used as a
  texture-randomised stand-in when the AdaIN weights are unavailable;
* Sec. 2.2 and 3.1 (cue-conflict stimuli, shape bias), the evaluation protocol ->
  ``cue_conflict.py`` (a demo-scale stimulus set, drawn with the demo renderer) and
  ``shape_bias.py`` (the 16-category mapping and the shape-bias ratio; normalisation from
  :mod:`shardforge.ops.normalize`, models from :mod:`shardforge.models.checkpoint`);
* ``spec.py``: the ``stylize`` pipeline's parameters, declared once, its catalog inputs
  (style set, weights' sha256) and registration; imports no torch and no Ray. (The Ray
  job's command line, ``pipelines/stylize.py``, is in the cli layer.)

Like every variant it imports only the layers below ``variants`` (never catalog, stream,
train or cli) and no other variant.
"""
