"""Colour inversion: the smallest variant, the worked example of docs/architecture.md ("Adding a variant").

``spec.py`` the parameters and registration, ``transform.py`` the algorithm (``255 - x`` on
the chosen channels of every image of the transformed splits). As a real variant it would
live in ``src/shardforge/variants/invert/``; it lives under ``tests/`` because it is only an
example (tests/test_example_variant.py adds this folder to ``shardforge.variants.__path__``).
"""
