"""Training recipe configuration: YAML sections mapped onto small frozen dataclasses.

A config file has the sections below (every key optional, defaults = ffcv-imagenet's
ResNet-18 recipe); unknown sections or keys are errors. ``--set SECTION.KEY=VALUE``
overrides (:func:`apply_overrides`) use YAML syntax for the value.

``optim.lr`` is the peak learning rate exactly as used, **not** scaled by batch size or
number of workers (the ffcv-imagenet convention: rn18 0.5 at batch 1024 on 1 GPU, rn50 1.7
at 512 per GPU on 8 GPUs). ``training.batch_size`` is per worker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

LOADERS = ("ffcv", "wds", "ray_data")
TARGET_KINDS = ("hard", "topk", "dense", "teacher", "reinforced")
AMP_MODES = ("auto", "bf16", "fp16", "off")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ModelConfig:
    """``model``: architecture (``small_cnn`` or a torchvision name) and BlurPool."""

    arch: str = "resnet18"
    blurpool: bool = True
    width: int = 32  # small_cnn base width

    def __post_init__(self) -> None:
        _check(self.width >= 1, f"model.width must be >= 1, got {self.width}")


@dataclass(frozen=True)
class DataConfig:
    """``data``: which loader feeds the trainers and its knobs."""

    loader: str = "ffcv"          # ffcv (.beton, local/shared file) | wds (shardforge's own
    #                               WebDataset loader, local or s3://; yields sample ids, so
    #                               stored soft targets work) | ray_data (WebDataset tars)
    num_workers: int = 8          # ffcv threads / wds processes per trainer; ray_data prefetch
    in_memory: bool = True        # ffcv os_cache (page cache shared by trainers on a node)
    shuffle_buffer: int = 2000    # ray_data: local shuffle buffer per trainer, samples
    on_corrupt: str = "skip"      # wds: a corrupt sample is skipped (replaced in its batch,
    #                               counted per epoch in metrics.jsonl) | strict: raises.
    #                               ray_data always drops undecodable rows; ffcv cannot
    #                               tell (shardforge.stream.faults)
    verify: bool = True           # wds: check each sample's sha256 against the index
    worker_kind: str = "process"  # wds: num_workers decoding processes | thread: decoding
    #                               threads in the trainer (same batches, no transfer)
    card: str | None = None       # the catalog card this recipe's reference numbers assume
    #                               (rn50: imagenet, rn18: imagenet-rn18); another dataset
    #                               trains with a warning naming both (null: no check)

    def __post_init__(self) -> None:
        _check(self.loader in LOADERS, f"data.loader must be one of {LOADERS}, got {self.loader!r}")
        _check(self.on_corrupt in ("skip", "strict"),
               f"data.on_corrupt must be skip or strict, got {self.on_corrupt!r}")
        _check(self.num_workers >= 1, f"data.num_workers must be >= 1, got {self.num_workers}")
        _check(self.worker_kind in ("process", "thread"),
               f"data.worker_kind must be process or thread, got {self.worker_kind!r}")


@dataclass(frozen=True)
class ResolutionConfig:
    """``resolution``: progressive resizing from ``min_res`` to ``max_res`` (multiples of 32)."""

    min_res: int = 160
    max_res: int = 192
    start_ramp: int = 11
    end_ramp: int = 13

    def __post_init__(self) -> None:
        _check(0 < self.min_res <= self.max_res,
               f"resolution: need 0 < min_res ({self.min_res}) <= max_res ({self.max_res})")
        _check(self.start_ramp <= self.end_ramp,
               f"resolution: start_ramp {self.start_ramp} > end_ramp {self.end_ramp}")


@dataclass(frozen=True)
class OptimConfig:
    """``optim``: SGD and the triangular learning-rate schedule (``lr`` is not scaled)."""

    lr: float = 0.5
    lr_peak_epoch: float = 2.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-5
    label_smoothing: float = 0.1
    name: str = "sgd"             # sgd | adamw (RDED recipe)
    schedule: str = "triangular"  # triangular (ffcv-imagenet) | half_cosine (RDED: lr -> lr/2)

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _check(self.name in ("sgd", "adamw"), f"optim.name must be sgd or adamw, got {self.name!r}")
        _check(self.schedule in ("triangular", "half_cosine"),
               f"optim.schedule must be triangular or half_cosine, got {self.schedule!r}")
        _check(0.0 <= self.label_smoothing < 1.0,
               f"optim.label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass(frozen=True)
class TrainingConfig:
    """``training``: length, per-worker batch size, precision and memory format."""

    epochs: int = 16
    batch_size: int = 1024
    amp: str = "auto"             # auto: bf16 on GPU, off on CPU
    channels_last: str | bool = "auto"   # auto: on for GPU
    crop_scale: tuple[float, float] = (0.08, 1.0)   # random-resized-crop area fraction range
    seed: int = 0
    patch_shuffle: int = 1        # RDED: shuffle each image's N column strips, then its N
    #                               row strips, BEFORE crop_scale's random-resized crop (the
    #                               loader then delivers whole images; 1 = off)
    cutmix: float = 0.0           # CutMix Beta(alpha, alpha) per batch (0 = off; needs teacher)

    def __post_init__(self) -> None:
        _check(self.patch_shuffle >= 1,
               f"training.patch_shuffle must be >= 1 (1 = off), got {self.patch_shuffle}")
        _check(self.cutmix >= 0, f"training.cutmix must be >= 0 (0 = off), got {self.cutmix}")
        object.__setattr__(self, "crop_scale", tuple(float(x) for x in self.crop_scale))
        _check(len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
               f"training.crop_scale must be [min, max] with 0 < min <= max <= 1, "
               f"got {self.crop_scale}")
        _check(self.epochs >= 1, f"training.epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"training.batch_size must be >= 1, got {self.batch_size}")
        _check(self.amp in AMP_MODES, f"training.amp must be one of {AMP_MODES}, got {self.amp!r}")
        _check(self.channels_last in ("auto", True, False),
               f"training.channels_last must be auto, true or false, got {self.channels_last!r}")

    @property
    def loader_crop_scale(self) -> tuple[float, float]:
        """The loader's random-resized-crop scale: ``crop_scale``, or (1, 1) (the whole
        image) when ``patch_shuffle`` > 1, whose crop comes after the shuffle
        (:class:`shardforge.train.batch_augment.BatchAugment`)."""
        return (1.0, 1.0) if self.patch_shuffle > 1 else self.crop_scale


@dataclass(frozen=True)
class ValidationConfig:
    """``validation``: centre crop ``crop_ratio`` of the short side resized to ``res``."""

    batch_size: int = 512
    res: int = 256
    crop_ratio: float = 224 / 256
    tta: bool = True              # average logits of the image and its horizontal flip

    def __post_init__(self) -> None:
        _check(0 < self.crop_ratio <= 1, f"validation.crop_ratio must be in (0, 1], "
                                         f"got {self.crop_ratio}")


@dataclass(frozen=True)
class TargetsConfig:
    """``targets``: hard labels, stored soft targets (``path``), an online teacher, or a
    reinforced dataset's replayed teacher targets (``reinforced``, set automatically when
    ``--data`` names a reinforced dataset)."""

    kind: str = "hard"
    path: str | None = None               # topk / dense: .npz soft-target file
    teacher_checkpoint: str | None = None  # teacher: a jobs/train.py checkpoint (file/dir/run)
    teacher_arch: str | None = None        # teacher: or a torchvision/small_cnn constructor ...
    teacher_weights: str | None = None     # ... plus a local state_dict file
    temperature: float = 4.0
    alpha: float = 1.0                     # teacher: weight of KD vs. hard-label CE
    t_squared: bool = True                 # teacher: scale the KL by T^2 (Hinton); RDED's
    #                                        code does not (its configs: false)

    def __post_init__(self) -> None:
        _check(self.kind in TARGET_KINDS,
               f"targets.kind must be one of {TARGET_KINDS}, got {self.kind!r}")
        if self.kind in ("topk", "dense"):
            _check(bool(self.path), f"targets.kind={self.kind} needs targets.path (.npz file)")
        if self.kind == "teacher":
            _check(bool(self.teacher_checkpoint) != bool(self.teacher_arch),
                   "targets.kind=teacher needs exactly one of targets.teacher_checkpoint or "
                   "targets.teacher_arch (+ targets.teacher_weights)")


@dataclass(frozen=True)
class ScalingConfig:
    """``scaling``: Ray Train workers (one per GPU when ``use_gpu``)."""

    num_workers: int = 1
    use_gpu: bool = True
    cpus_per_worker: float = 1.0   # CPUs reserved per worker (torch threads: max(1, int))

    def __post_init__(self) -> None:
        _check(self.num_workers >= 1, f"scaling.num_workers must be >= 1, got {self.num_workers}")
        _check(self.cpus_per_worker > 0,
               f"scaling.cpus_per_worker must be > 0, got {self.cpus_per_worker}")


@dataclass(frozen=True)
class RunConfig:
    """``run``: where checkpoints and metrics go, and failure handling."""

    storage_path: str | None = None   # None: $SHARDFORGE_RUNS, else $SHARDFORGE_HOME/runs;
    #                               else a dir / shared mount / s3:// URL all nodes see
    #                               (relative: refused under `ray job submit`)
    name: str | None = None       # default: CONFIG-DATASET
    max_failures: int = 2         # worker-group restarts from the latest checkpoint
    num_to_keep: int | None = 2   # checkpoints kept (None: all)


@dataclass(frozen=True)
class TrainConfig:
    """A whole training recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    resolution: ResolutionConfig = field(default_factory=ResolutionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _check(self.optim.lr_peak_epoch <= self.training.epochs,
               f"optim.lr_peak_epoch {self.optim.lr_peak_epoch} is after the last epoch "
               f"({self.training.epochs})")
        _check(self.training.cutmix == 0 or self.targets.kind == "teacher",
               "training.cutmix mixes images without mixing labels: it needs "
               "targets.kind=teacher (the teacher labels the mixed images)")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "config") -> TrainConfig:
        """Build from a nested dict (a parsed YAML file); ValueError names bad sections/keys."""
        data = data or {}
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ValueError(f"{source}: unknown section(s) {unknown}; valid: {sorted(sections)}")
        built = {}
        for name, f in sections.items():
            section_cls = f.default_factory  # type: ignore[misc]
            values = data.get(name) or {}
            if not isinstance(values, dict):
                raise ValueError(f"{source}: section {name!r} must be a mapping")
            keys = {g.name for g in dataclasses.fields(section_cls)}
            bad = sorted(set(values) - keys)
            if bad:
                raise ValueError(f"{source}: unknown key(s) {bad} in section {name!r}; "
                                 f"valid: {sorted(keys)}")
            try:
                built[name] = section_cls(**values)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{source}: {exc}") from None
        return cls(**built)

    def to_dict(self) -> dict[str, Any]:
        """The nested-dict form (round-trips through :meth:`from_dict`)."""
        return dataclasses.asdict(self)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``SECTION.KEY=VALUE`` overrides applied (VALUE is YAML)."""
    out = {k: dict(v or {}) for k, v in (data or {}).items()}
    for item in overrides:
        path, sep, raw = item.partition("=")
        section, dot, key = path.partition(".")
        if not sep or not dot or not section or not key:
            raise ValueError(f"override {item!r} must look like section.key=value "
                             "(e.g. training.epochs=4)")
        out.setdefault(section, {})[key] = yaml.safe_load(raw)
    return out


def load_config(path: str, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe (local path or URL), apply ``overrides``, validate."""
    from shardforge.storage import resolve

    try:
        data = yaml.safe_load(resolve(path).read_bytes())
    except FileNotFoundError:
        raise ValueError(f"config file {path!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path!r} is not valid YAML: {exc}") from None
    return TrainConfig.from_dict(apply_overrides(data or {}, overrides or []), source=path)
