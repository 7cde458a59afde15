"""RDED dataset distillation (Sun, Shi, Yu, Lin, CVPR 2024) as a group-by-class variant.

Per class (Sec. 3 / Alg. 1 of the paper; parameter names as the paper's code):

1. take ``mipc`` real images of the class (a seeded subset when the class has more);
2. cut ``num_crop`` square candidates from each: ``RandomResizedCrop(size // factor,
   scale=(0.08, 1), ratio=(1, 1))``, boxes drawn from a generator seeded by
   ``(seed, label)`` (the reference sets no seed; here a seed fixes the selection);
3. score every candidate with the observer: the cross-entropy of the true class on the
   candidate, normalised and zero-padded back to ``size x size`` (zero = the mean colour
   after normalisation; the patch sits at the centre), lower = more realistic;
4. keep each image's best candidate, then the ``ipc * factor**2`` best images of the class;
5. output image ``j`` (of ``n = ipc``) is the ``factor x factor`` grid (row-major) of the
   ranked patches ``j, n + j, 2n + j, ...``.

Defaults follow the paper: ``factor`` 2 at 224 px (ImageNet), 1 at 32/64 px (CIFAR,
Tiny-ImageNet) (Sec. 4.1); ``mipc`` 300 and ``num_crop`` 5. The ``random`` method is the
baseline the paper compares against: ``ipc`` real images per class chosen at random (same
seed rule), each resized (short side) and centre-cropped to ``size``.

The class order of the observer must match the dataset's
(:func:`shardforge.models.reference.load_checked`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from shardforge.build.transform import Decoded, VariantSpec
from shardforge.models.reference import ObserverRef, load_observer, observer_identity

if TYPE_CHECKING:   # torch is imported where the observer runs: the catalog's schema needs none
    import torch

METHODS = ("rded", "random")
#: RandomResizedCrop area range of the candidates (paper's code: scale=(0.08, 1)).
CROP_SCALE = (0.08, 1.0)
#: Default observer input size (ImageNet, Sec. 4.1).
DEFAULT_SIZE = 224
DEFAULT_MIPC = 300
DEFAULT_NUM_CROP = 5
#: Candidates per observer forward pass (speed only: BatchNorm is in eval mode).
SCORE_BATCH = 256
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


def default_factor(size: int) -> int:
    """Patches per side: 1 at low resolution (<= 64 px: CIFAR, Tiny-ImageNet), else 2
    (224 px ImageNet), as in the paper's Sec. 4.1."""
    return 1 if size <= 64 else 2


@dataclass(frozen=True)
class RdedParams:
    """The parameters that decide a distilled set (see the module docstring)."""

    ipc: int
    method: str = "rded"
    size: int = DEFAULT_SIZE
    factor: int = 0             # 0: default_factor(size)
    mipc: int = DEFAULT_MIPC
    num_crop: int = DEFAULT_NUM_CROP
    seed: int = 0

    def __post_init__(self) -> None:
        if self.factor == 0:
            object.__setattr__(self, "factor", default_factor(self.size))
        problems = []
        if self.method not in METHODS:
            problems.append(f"method {self.method!r} is not one of {METHODS}")
        for name in ("ipc", "size", "factor", "mipc", "num_crop"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not problems and self.size % self.factor:
            problems.append(f"size {self.size} is not a multiple of factor {self.factor}; "
                            "pick a size divisible by the factor")
        if not problems and self.method == "rded" and self.mipc < self.ipc * self.factor ** 2:
            problems.append(f"mipc {self.mipc} < ipc * factor^2 = "
                            f"{self.ipc * self.factor ** 2} patches needed per class")
        if problems:
            raise ValueError("RDED parameters: " + "; ".join(problems))

    @property
    def patch(self) -> int:
        """Side of one patch: ``size // factor``."""
        return self.size // self.factor

    @property
    def patches_per_class(self) -> int:
        """``ipc * factor**2``: the ranked patches a class contributes."""
        return self.ipc * self.factor ** 2


def class_rng(seed: int, label: int) -> np.random.Generator:
    """The generator of class ``label``: depends on the seed and the label only, so a
    class's selection is the same whichever worker distils it, in any order."""
    return np.random.default_rng([seed, label])


def choose_images(keys: list[str], count: int, rng: np.random.Generator) -> list[int]:
    """Indices (ascending) of ``count`` of ``keys`` chosen at random, or all of them when
    there are no more than ``count``; ``keys`` must be in a fixed (sorted) order."""
    if len(keys) <= count:
        return list(range(len(keys)))
    return sorted(rng.choice(len(keys), size=count, replace=False).tolist())


def crop_box(width: int, height: int, rng: np.random.Generator,
             scale: tuple[float, float] = CROP_SCALE) -> tuple[int, int, int, int]:
    """A square ``RandomResizedCrop`` box ``(x0, y0, x1, y1)`` (ratio (1, 1)).

    The torchvision rule with a seeded generator: up to 10 tries of an area fraction
    uniform in ``scale``; the side is ``round(sqrt(area))``; the first that fits is placed
    uniformly; otherwise the centred square of the short side."""
    area = width * height
    for _ in range(10):
        side = int(round(np.sqrt(area * rng.uniform(*scale))))
        if 0 < side <= min(width, height):
            x0 = int(rng.integers(0, width - side + 1))
            y0 = int(rng.integers(0, height - side + 1))
            return x0, y0, x0 + side, y0 + side
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def resize_box(pixels: np.ndarray, box: tuple[int, int, int, int], side: int) -> np.ndarray:
    """The ``box`` of an H x W x 3 uint8 image resized to ``side x side`` (PIL bilinear
    with antialiasing), uint8."""
    image = Image.fromarray(pixels)
    return np.asarray(image.resize((side, side), Image.Resampling.BILINEAR, box=box))


def candidate_crops(pixels: np.ndarray, num_crop: int, patch: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """``num_crop`` candidate patches (num_crop x patch x patch x 3, uint8) and their boxes."""
    height, width = pixels.shape[:2]
    boxes = [crop_box(width, height, rng) for _ in range(num_crop)]
    return np.stack([resize_box(pixels, b, patch) for b in boxes]), boxes


def to_observer_input(patches: np.ndarray, size: int) -> torch.Tensor:
    """N x p x p x 3 uint8 patches -> N x 3 x size x size float32: ImageNet-normalised,
    each patch centred on a zero canvas (zero = the mean colour after normalisation)."""
    import torch
    import torch.nn.functional as F

    x = (patches.astype(np.float32) - _MEAN) / _STD
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    p = t.shape[-1]
    before = (size - p) // 2
    after = size - p - before
    return F.pad(t, (before, after, before, after)).contiguous()


def score_patches(model: torch.nn.Module, patches: np.ndarray, label: int, size: int,
                  device: torch.device | str = "cpu",
                  batch_size: int = SCORE_BATCH) -> np.ndarray:
    """Cross-entropy of class ``label`` for each patch (float64 array of length N), the
    observer seeing the patch zero-padded to ``size`` (:func:`to_observer_input`)."""
    import torch
    import torch.nn.functional as F

    out = []
    with torch.no_grad():
        for i in range(0, len(patches), batch_size):
            x = to_observer_input(patches[i:i + batch_size], size).to(device)
            logits = model(x).float()
            target = torch.full((x.shape[0],), label, dtype=torch.long, device=logits.device)
            out.append(F.cross_entropy(logits, target, reduction="none").cpu().double())
    return torch.cat(out).numpy() if out else np.zeros(0)


def select(scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """From ``scores`` (images x num_crop), each image's best candidate and the ranking.

    Returns ``(best, ranked)``: ``best[i]`` is image ``i``'s lowest-loss candidate;
    ``ranked`` the ``count`` images with the lowest best-candidate loss, ascending (ties:
    lower index first). Raises ValueError when fewer than ``count`` images are given."""
    if scores.shape[0] < count:
        raise ValueError(f"{scores.shape[0]} images for {count} patches")
    best = np.argmin(scores, axis=1)
    best_loss = scores[np.arange(scores.shape[0]), best]
    ranked = np.argsort(best_loss, kind="stable")[:count]
    return best, ranked


def stitch(patches: np.ndarray, ipc: int, factor: int) -> np.ndarray:
    """``ipc`` images from ``ipc * factor**2`` ranked patches (N x p x p x 3): image ``j``
    is the row-major ``factor x factor`` grid of patches ``j, ipc + j, 2 ipc + j, ...``."""
    n, p = ipc, patches.shape[1]
    if patches.shape[0] != n * factor ** 2:
        raise ValueError(f"stitching {ipc} images of {factor}x{factor} patches needs "
                         f"{n * factor ** 2} patches, got {patches.shape[0]}")
    out = np.empty((n, factor * p, factor * p, 3), dtype=patches.dtype)
    for j in range(n):
        for k in range(factor ** 2):
            r, c = divmod(k, factor)
            out[j, r * p:(r + 1) * p, c * p:(c + 1) * p] = patches[k * n + j]
    return out


def _class_label(samples: list[Decoded]) -> int:
    labels = {s.label for s in samples}
    if len(labels) != 1:
        raise ValueError(f"RDED distils one class at a time, got labels {sorted(labels)}; "
                         "run it with group_by_class=True")
    return labels.pop()


def distill_class(samples: list[Decoded], params: RdedParams, model: torch.nn.Module,
                  device: torch.device | str = "cpu") -> list[Decoded]:
    """The ``ipc`` RDED images of one class (all ``samples`` share a label).

    Keys ``rded-LLLL-JJJJ``; ``meta["patches"]`` lists, in grid order, each patch's source
    key, crop box and loss. Raises ValueError when the class has fewer images than
    ``ipc * factor**2``."""
    label = _class_label(samples)
    pool = sorted(samples, key=lambda s: s.key)
    need = params.patches_per_class
    if len(pool) < need:
        raise ValueError(f"class {label} has {len(pool)} images, RDED with ipc {params.ipc} "
                         f"and factor {params.factor} needs {need}; lower ipc or factor")
    rng = class_rng(params.seed, label)
    chosen = [pool[i] for i in choose_images([s.key for s in pool], params.mipc, rng)]
    crops, boxes = zip(*(candidate_crops(s.pixels, params.num_crop, params.patch, rng)
                         for s in chosen), strict=True)
    flat = np.concatenate(crops)
    scores = score_patches(model, flat, label, params.size, device).reshape(
        len(chosen), params.num_crop)
    best, ranked = select(scores, need)
    patches = np.stack([crops[i][best[i]] for i in ranked])
    images = stitch(patches, params.ipc, params.factor)
    out = []
    for j in range(params.ipc):
        cells = [int(ranked[k * params.ipc + j]) for k in range(params.factor ** 2)]
        meta = {"method": "rded", "factor": params.factor, "patches": [
            {"key": chosen[i].key, "box": list(boxes[i][best[i]]),
             "loss": round(float(scores[i, best[i]]), 5)} for i in cells]}
        out.append(Decoded(f"rded-{label:04d}-{j:04d}", label, images[j], meta))
    return out


def center_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """The centred square of the short side, resized to ``size x size`` (uint8)."""
    h, w = pixels.shape[:2]
    side = min(h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return resize_box(pixels, (x0, y0, x0 + side, y0 + side), size)


def random_class(samples: list[Decoded], params: RdedParams) -> list[Decoded]:
    """The baseline: ``ipc`` real images of the class chosen with :func:`class_rng`, each
    centre-cropped and resized to ``size``; keys ``random-LLLL-JJJJ``."""
    label = _class_label(samples)
    pool = sorted(samples, key=lambda s: s.key)
    if len(pool) < params.ipc:
        raise ValueError(f"class {label} has {len(pool)} images, fewer than ipc {params.ipc}")
    picked = choose_images([s.key for s in pool], params.ipc, class_rng(params.seed, label))
    return [Decoded(f"random-{label:04d}-{j:04d}", label, center_square(pool[i].pixels,
                                                                      params.size),
                    {"method": "random", "source": pool[i].key})
            for j, i in enumerate(picked)]


class RdedTransform:
    """The engine's transform: one class of the train split in, its distilled images out.

    Loads the observer once (per actor), on the GPU when one is visible, and checks that
    the observer file is the one the driver fingerprinted."""

    def __init__(self, params: RdedParams, observer: ObserverRef | None,
                 classes: tuple[str, ...], sha256: str | None) -> None:
        import torch

        self.params = params
        self.model: torch.nn.Module | None = None
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if params.method == "rded":
            if observer is None:
                raise ValueError("method rded needs an observer")
            if sha256 is not None and observer_identity(observer)["observer_sha256"] != sha256:
                raise ValueError(f"observer {observer.location} changed since the build was "
                                 "planned; rerun the distillation")
            self.model = load_observer(observer, classes).model.to(self.device)

    def __call__(self, samples: list[Decoded], split: str) -> list[Decoded]:
        if not samples:
            return []
        if self.params.method == "random":
            return random_class(samples, self.params)
        assert self.model is not None
        return distill_class(samples, self.params, self.model, self.device)


def _make_transform(params: RdedParams, observer: ObserverRef | None,
                    classes: tuple[str, ...], sha256: str | None) -> RdedTransform:
    return RdedTransform(params, observer, classes, sha256)


def rded_params(params: Mapping[str, Any]) -> RdedParams:
    """:class:`RdedParams` from a card's/CLI's parameter mapping (null = default)."""
    fields = {k: params[k] for k in ("ipc", "method", "size", "factor", "mipc", "num_crop",
                                     "seed") if params.get(k) is not None}
    return RdedParams(**fields)


def observer_ref(params: Mapping[str, Any]) -> ObserverRef | None:
    """The :class:`ObserverRef` of ``params`` (``observer``, ``observer_weights``,
    ``observer_classes``), None when no observer is given."""
    if not params.get("observer"):
        return None
    return ObserverRef(params["observer"], params.get("observer_weights"),
                       params.get("observer_classes"))


def make_variant(params: Mapping[str, Any], secrets: Mapping[str, str] | None = None, *,
                 dataset_classes: tuple[str, ...] | list[str] = (), num_gpus: float = 0.0,
                 num_actors: int | None = None) -> VariantSpec:
    """The RDED (or random-baseline) :class:`VariantSpec` for ``params``.

    The observer is pinned: a run directory resolves to its newest checkpoint file now,
    and ``params`` of the spec record that file and its sha256 (the catalog's lineage of
    the observer; a new observer means a new build). ``dataset_classes`` is needed only
    for ``observer_classes: sorted``. The class order is checked by the caller
    (:func:`shardforge.models.reference.check_class_order`), which knows the parent."""
    del secrets   # RDED has no secret parameters
    rp = rded_params(params)
    ref = observer_ref(params)
    spec_params: dict[str, Any] = {"name": "rded", **asdict(rp)}
    sha = None
    if rp.method == "rded":
        if ref is None:
            raise ValueError("method rded needs an observer: a jobs/train.py checkpoint (run "
                             "directory, checkpoint directory or state.pt) or a model name "
                             "with observer_weights")
        identity = observer_identity(ref)
        sha = identity["observer_sha256"]
        spec_params.update(identity)
        ref = ObserverRef(identity["observer_file"] if ref.is_checkpoint else ref.location,
                          ref.weights, ref.classes)
    else:
        ref = None
    return VariantSpec(
        name="distill", params=spec_params,     # the pipeline's name; params say the method
        make_transform=functools.partial(_make_transform, rp, ref, tuple(dataset_classes), sha),
        splits=("train",), group_by_class=True, use_actors=rp.method == "rded",
        num_gpus=num_gpus, num_actors=num_actors)
