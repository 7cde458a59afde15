"""RDED dataset distillation (Sun, Shi, Yu, Lin, CVPR 2024): ``spec.py`` the parameters and
registration, ``transform.py`` the crop scoring, selection and stitching."""
