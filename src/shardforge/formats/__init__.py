"""Layer: formats (the foundation, with storage, names and torch_files). The byte formats:
images (decode, resize, encode with FFCV's semantics; decoding stored samples and crops),
reproducible WebDataset tars, FFCV .beton parts and their merge. Imports nothing of
shardforge."""
