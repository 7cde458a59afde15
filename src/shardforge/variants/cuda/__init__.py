"""CUDA unlearnable datasets (Sadasivan, Soltanolkotabi, Feizi, CVPR 2023): ``spec.py`` the
parameters and registration, ``transform.py`` the class-wise convolution, ``key.py`` the
private key's HMAC midstates."""
