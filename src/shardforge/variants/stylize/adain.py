"""AdaIN style transfer (Huang & Belongie, ICCV 2017) as Stylized-ImageNet used it.

Geirhos et al. (ICLR 2019, Sec. 2.3 and Appendix A.2) render every ImageNet image in the
style of a random painting with AdaIN at ``alpha = 1.0``. The network, as in the canonical
weight files (``vgg_normalised.pth``, ``decoder.pth``):

* encoder: ``Conv2d(3, 3, 1x1)`` (the Caffe colour/mean normalisation folded into a conv)
  then VGG-19 where every 3x3 conv is preceded by ``ReflectionPad2d(1)`` and every max-pool
  is 2x2 with ``ceil_mode=True``; 53 modules in all, used up to ``relu4_1`` (the first 31);
* decoder: the mirror image down to 3 channels, nearest x2 upsampling, no final activation;
* AdaIN: per channel ``(c - mean_c) / std_c * std_s + mean_s`` with
  ``std = sqrt(unbiased variance + 1e-5)``, then ``alpha * that + (1 - alpha) * c``.

Images go in as RGB in [0, 1] (N, 3, H, W); the decoder's output is clamped to [0, 1].
The files are loaded unchanged (same keys and shapes as the canonical state dicts); a
missing, unexpected or mis-shaped key raises :class:`WeightsError` naming the key and file.
This module holds the network only; :mod:`shardforge.variants.stylize.transform` runs it on shards.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from shardforge.ops.autocast import autocast
from shardforge.variants.stylize.adain_weights import (
    DECODER_FILE,
    ENCODER_FILE,
    WeightsError,
    file_sha256,
    weight_path,
    weights_sha256,
)

#: The encoder is used up to relu4_1: its first 31 modules (anchors: Stylized-ImageNet).
RELU4_1 = 31
#: Added to the unbiased per-channel variance before the square root (AdaIN reference).
EPS = 1e-5
#: Autocast dtypes on GPU, by name; "off" runs float32 everywhere.
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "off": None}


def _pad() -> nn.Module:
    return nn.ReflectionPad2d((1, 1, 1, 1))


def _pool() -> nn.Module:
    return nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)


def build_encoder() -> nn.Sequential:
    """The full 53-module normalised VGG-19 of ``vgg_normalised.pth`` (random init).

    Conv modules sit at indices 0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51.
    """
    layers: list[nn.Module] = [nn.Conv2d(3, 3, (1, 1))]
    # (in, out) of each 3x3 conv per VGG-19 block; a max-pool ends every block but the last.
    blocks = [[(3, 64), (64, 64)], [(64, 128), (128, 128)],
              [(128, 256)] + [(256, 256)] * 3, [(256, 512)] + [(512, 512)] * 3,
              [(512, 512)] * 4]
    for b, convs in enumerate(blocks):
        for cin, cout in convs:
            layers += [_pad(), nn.Conv2d(cin, cout, (3, 3)), nn.ReLU()]
        if b < len(blocks) - 1:
            layers.append(_pool())
    return nn.Sequential(*layers)


def build_decoder() -> nn.Sequential:
    """The 29-module decoder of ``decoder.pth`` (random init); convs at 1, 5, 8, 11, 14, 18,
    21, 25, 28: relu4_1 features (512 channels) back to an RGB image 8x larger."""
    def conv(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
        return [_pad(), nn.Conv2d(cin, cout, (3, 3))] + ([nn.ReLU()] if relu else [])

    def up() -> list[nn.Module]:
        return [nn.Upsample(scale_factor=2, mode="nearest")]

    return nn.Sequential(
        *conv(512, 256), *up(),
        *conv(256, 256), *conv(256, 256), *conv(256, 256), *conv(256, 128), *up(),
        *conv(128, 128), *conv(128, 64), *up(),
        *conv(64, 64), *conv(64, 3, relu=False),
    )


def channel_stats(feat: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std of ``feat`` (N, C, H, W), each (N, C, 1, 1), in
    float32; std is ``sqrt(unbiased variance + eps)`` as in the AdaIN reference."""
    if feat.dim() != 4:
        raise ValueError(f"features must be N x C x H x W, got shape {tuple(feat.shape)}")
    n, c = feat.shape[:2]
    flat = feat.float().reshape(n, c, -1)
    if flat.shape[2] < 2:
        raise ValueError("features need at least 2 spatial positions for an unbiased variance; "
                         "use larger images (>= 16 px for relu4_1)")
    mean = flat.mean(dim=2).view(n, c, 1, 1)
    std = (flat.var(dim=2, unbiased=True) + eps).sqrt().view(n, c, 1, 1)
    return mean, std


def adain_from_stats(content_feat: torch.Tensor, style_mean: torch.Tensor,
                     style_std: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """AdaIN of ``content_feat`` to given style statistics ((N, C, 1, 1) each), blended with
    the content features by ``alpha`` (1.0: fully stylized). Float32 result."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    c = content_feat.float()
    c_mean, c_std = channel_stats(c)
    out = (c - c_mean) / c_std * style_std + style_mean
    return out if alpha == 1.0 else alpha * out + (1.0 - alpha) * c


def adain(content_feat: torch.Tensor, style_feat: torch.Tensor,
          alpha: float = 1.0) -> torch.Tensor:
    """AdaIN: ``content_feat`` (N, C, H, W) re-normalised to the per-channel mean and std of
    ``style_feat`` (N, C, H', W'), sample by sample; ``alpha`` blends with the content."""
    if content_feat.shape[:2] != style_feat.shape[:2]:
        raise ValueError(f"content features {tuple(content_feat.shape)} and style features "
                         f"{tuple(style_feat.shape)} differ in batch size or channels")
    return adain_from_stats(content_feat, *channel_stats(style_feat), alpha=alpha)


def _read_state(path: str) -> dict[str, torch.Tensor]:
    from shardforge.torch_files import UnsafeTorchFileError, load_torch_bytes

    try:
        with open(path, "rb") as f:
            state = load_torch_bytes(f.read(), f"AdaIN weights {path}")
    except UnsafeTorchFileError as exc:
        raise WeightsError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"AdaIN weights: cannot read {path} as a PyTorch state dict "
                           f"({exc}); save it with torch.save(module.state_dict(), path)") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"AdaIN weights: {path} holds a {type(state).__name__}, not a state "
                           "dict of tensors; save it with torch.save(module.state_dict(), path)")
    return state


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Raise :class:`WeightsError` naming the first missing, unexpected or mis-shaped key of
    ``state`` against ``model``'s canonical layout (``path`` names the file)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise WeightsError(f"AdaIN weights: {path} lacks key {missing[0]!r} ({len(missing)} "
                           f"missing; expected keys {_keys(expected)}): not the canonical "
                           f"{os.path.basename(path)} layout")
    extra = [k for k in state if k not in expected]
    if extra:
        raise WeightsError(f"AdaIN weights: {path} has unexpected key {extra[0]!r} ({len(extra)}"
                           f" unexpected; expected keys {_keys(expected)})")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise WeightsError(f"AdaIN weights: {path} key {k!r} has shape "
                               f"{tuple(state[k].shape)}, expected {tuple(v.shape)}")


def _keys(state: dict) -> str:
    idx = sorted({int(k.split(".")[0]) for k in state})
    return "{" + ",".join(map(str, idx)) + "}.{weight,bias}"


class AdainNet(nn.Module):
    """Encoder up to relu4_1 and decoder; ``forward(content, style_mean, style_std, alpha)``.

    ``sha256``: ``{file: sha256}`` of the files it was loaded from (empty for random init).
    """

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential,
                 sha256: dict[str, str] | None = None) -> None:
        super().__init__()
        self.encoder = nn.Sequential(*list(encoder.children())[:RELU4_1])
        self.decoder = decoder
        self.sha256 = dict(sha256 or {})

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """relu4_1 features of RGB images in [0, 1] (N, 3, H, W)."""
        return self.encoder(images)

    def style_stats(self, styles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel relu4_1 mean and std (float32, (N, 512, 1, 1)) of style images."""
        return channel_stats(self.encode(styles))

    def forward(self, content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
                alpha: float = 1.0) -> torch.Tensor:
        """Stylized images (N, 3, H', W') in [0, 1] (H' = H rounded up to a multiple of 8)."""
        feat = adain_from_stats(self.encode(content), style_mean, style_std, alpha)
        out = self.decoder(feat)
        return out.float().clamp_(0.0, 1.0)


def save_random_weights(weights_dir: str, seed: int = 0) -> dict[str, str]:
    """Write randomly initialised ``vgg_normalised.pth`` and ``decoder.pth`` with the canonical
    keys and shapes into ``weights_dir`` and return their sha256s; for tests and benchmarks
    only (a random network has learned no style)."""
    gen = torch.Generator().manual_seed(seed)
    os.makedirs(weights_dir, exist_ok=True)
    for model, name in ((build_encoder(), ENCODER_FILE), (build_decoder(), DECODER_FILE)):
        with torch.no_grad():
            for p in model.parameters():  # He-style init, independent of the global RNG
                fan_in = max(1, p[0].numel()) if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / fan_in) ** 0.5
                        if p.dim() > 1 else torch.zeros(p.shape))
        torch.save(model.state_dict(), os.path.join(weights_dir, name))
    return weights_sha256(weights_dir)


def load_adain(weights_dir: str) -> AdainNet:
    """Load the canonical ``vgg_normalised.pth`` and ``decoder.pth`` from ``weights_dir``
    (a local directory) into an :class:`AdainNet` in eval mode on the CPU.

    Raises :class:`WeightsError` naming the file and key when a file is missing or its keys
    or shapes differ from the canonical layout.
    """
    enc_path = weight_path(weights_dir, ENCODER_FILE)
    dec_path = weight_path(weights_dir, DECODER_FILE)
    encoder, decoder = build_encoder(), build_decoder()
    for model, path in ((encoder, enc_path), (decoder, dec_path)):
        state = _read_state(path)
        check_state_dict(model, state, path)
        model.load_state_dict(state, strict=True)
    net = AdainNet(encoder, decoder, {ENCODER_FILE: file_sha256(enc_path),
                                      DECODER_FILE: file_sha256(dec_path)})
    return net.eval()


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1] on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor, height: int, width: int) -> np.ndarray:
    """float (N, 3, H', W') in [0, 1] -> uint8 (N, height, width, 3), cropping the decoder's
    padding to a multiple of 8 (rounded as torchvision's ``save_image``: x * 255 + 0.5)."""
    out = images[:, :, :height, :width].mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def stylize_batch(net: AdainNet, content: np.ndarray, style_mean: torch.Tensor,
                  style_std: torch.Tensor, alpha: float = 1.0, amp: str = "fp16") -> np.ndarray:
    """Stylize uint8 content images (N, H, W, 3) to the given style statistics; uint8 out.

    Runs on the device of ``net``; on CUDA under autocast ``amp`` (fp16, bf16 or off; the
    AdaIN statistics are always float32). Output has the content's H and W.
    """
    device = next(net.parameters()).device
    x = to_tensor(content, device)
    with torch.inference_mode(), autocast(device, amp_dtype(device, amp)):
        out = net(x, style_mean.to(device), style_std.to(device), alpha)
    return to_uint8(out, content.shape[1], content.shape[2])


def style_stats_batch(net: AdainNet, styles: np.ndarray,
                      amp: str = "fp16") -> tuple[torch.Tensor, torch.Tensor]:
    """relu4_1 mean and std (float32, (N, 512, 1, 1), on the CPU) of uint8 style images."""
    device = next(net.parameters()).device
    with torch.inference_mode(), autocast(device, amp_dtype(device, amp)):
        mean, std = net.style_stats(to_tensor(styles, device))
    return mean.cpu(), std.cpu()


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype of ``amp`` (fp16, bf16 or off) on ``device``: ``AMP_DTYPES[amp]``
    on CUDA, None (float32, no autocast) on the CPU or with "off"; for
    :func:`shardforge.ops.autocast.autocast`."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    return AMP_DTYPES[amp] if device.type == "cuda" else None
