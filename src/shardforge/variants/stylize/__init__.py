"""Stylized-ImageNet (Geirhos et al., ICLR 2019): ``spec.py`` the parameters and
registration, ``transform.py`` content crop, style assignment and the transform,
``adain.py`` the AdaIN network (Huang & Belongie 2017), ``fourier.py`` the weights-free
stand-in, ``styles.py`` style sets, ``shape_bias.py`` / ``cue_conflict.py`` the evaluation."""
