"""Per-sample soft labels from a trained model: the ``.npz`` files ``targets.kind`` ``topk``
and ``dense`` train from (rows in ``beton_index`` order of the split, see
:mod:`shardforge.train.targets`)."""

from __future__ import annotations

import io

import numpy as np
import torch

from shardforge.storage import resolve


@torch.no_grad()
def export_soft_labels(checkpoint: str, data: str, out: str, *, split: str = "train",
                       top_k: int | None = 10, res: int | None = None,
                       crop_ratio: float | None = None, batch_size: int = 256,
                       workers: int = 2) -> dict:
    """Write the softmax of ``checkpoint``'s model on every sample of ``split`` (centre crop
    at the checkpoint's validation resolution) to ``out``: sparse ``topk_indices`` +
    ``topk_probs`` (float16) when ``top_k``, else dense ``probs`` (float16). Row ``i`` is the
    sample at ``beton_index`` ``i``. Returns ``{"rows", "classes", "path"}``.
    Raises ValueError when the checkpoint's classes differ from the dataset's.
    """
    from shardforge.catalog.lookup import resolve_dataset
    from shardforge.formats.decode import CenterCrop
    from shardforge.models.checkpoint import load_state, model_from_state
    from shardforge.stream.ray_data import to_model_input
    from shardforge.stream.wds_loader import make_loader

    state = load_state(checkpoint)
    location = resolve_dataset(data)
    val_cfg = state.get("config", {}).get("validation", {})
    res = res or int(val_cfg.get("res", 224))
    crop_ratio = crop_ratio or float(val_cfg.get("crop_ratio", 224 / 256))
    loader = make_loader(location, split, batch_size, rank=0, world_size=1, num_workers=workers,
                         transform=CenterCrop(res, crop_ratio), order="sequential",
                         remainder="drop", with_ids=True, persistent_workers=False)
    classes = list(loader.stream.dataset.classes)
    if list(state.get("classes", [])) != classes:
        raise ValueError(f"checkpoint {checkpoint}: its classes {state.get('classes')} differ "
                         f"from dataset {data!r}'s {classes}; use a model trained on this "
                         "dataset's classes (same order)")
    model = model_from_state(state).eval()
    n, c = len(loader.stream.index), len(classes)
    probs = np.zeros((n, c), np.float32)
    for images, _labels, ids in loader:
        probs[ids.numpy()] = torch.softmax(model(to_model_input(images)).float(), 1).numpy()
    buf = io.BytesIO()
    if top_k:
        k = min(top_k, c)
        idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        np.savez(buf, topk_indices=idx.astype(np.int16),
                 topk_probs=np.take_along_axis(probs, idx, 1).astype(np.float16))
    else:
        np.savez(buf, probs=probs.astype(np.float16))
    resolve(out).write_bytes_atomic(buf.getvalue())
    return {"rows": n, "classes": c, "path": resolve(out).url}
