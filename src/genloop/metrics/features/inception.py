"""FID Inception-v3 (pool3, 2048-d) in plain ``torch.nn``, weights from a local file.

The network is the TensorFlow 2015-12-05 Inception-v3 graph used by the original FID code
(Heusel et al. 2017), as ported to PyTorch by pytorch-fid (Seitzer 2020): torchvision's
Inception-v3 layout with the FID-specific blocks (average pooling without padding counted in
``Mixed_5*``, ``Mixed_6*`` and ``Mixed_7b``; max pooling in the last block, ``Mixed_7c``) and a
1008-way ``fc`` layer. Parameter names equal those of pytorch-fid's weight file
``pt_inception-2015-12-05-6726825d.pth`` (and torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth``, which holds the same tensors), so
``load_state_dict`` accepts either file. torchvision is deliberately not a dependency.

Input: images ``(n, C, H, W)`` in ``[-1, 1]`` with ``C = 1`` (replicated to 3 channels) or
``C = 3``; by default they are resized to 299×299 with bilinear interpolation,
``align_corners=False`` (exactly pytorch-fid's ``resize_input=True`` path; pytorch-fid then maps
[0, 1] to [-1, 1], which our inputs already are); :data:`RESIZES` lists the conventions of
torch-fidelity and clean-fid, reproduced end to end. Output: the 2048-d global average of
``Mixed_7c`` ("pool3"). Feature caches are keyed by a digest of the weights' content
(:func:`weights_digest`).

Weights are never downloaded. They are looked up, in order, at the ``weights_path`` option, the
``GENLOOP_INCEPTION_WEIGHTS`` environment variable, and ``<cache>/weights/`` (cache =
``$GENLOOP_CACHE_DIR`` or ``~/.cache/genloop``).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genloop.errors import ConfigError, DataError
from genloop.metrics._arrays import default_cache_dir, resolve_device
from genloop.metrics.features.base import FeatureExtractor

logger = logging.getLogger(__name__)

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FIDELITY_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution (no bias) → batch norm (eps 1e-3) → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)  # type: ignore[arg-type]
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # the TF graph averages over valid pixels only (pytorch-fid: count_include_pad=False)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """Inception block A (``Mixed_5b/c/d``) with FID pooling."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid-reduction block B (``Mixed_6a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class FIDInceptionC(nn.Module):
    """Inception block C (``Mixed_6b..e``, factorised 7×7) with FID pooling."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid-reduction block D (``Mixed_7a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class FIDInceptionE(nn.Module):
    """Inception block E (``Mixed_7b``: average pool; ``Mixed_7c``: max pool, as in the TF graph)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "avg":
            pooled = _avg_pool(x)
        else:  # the TF graph's last block max-pools (a known quirk of the FID network)
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        bp = self.branch_pool(pooled)
        return torch.cat([b1, b3, bd, bp], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 network; :meth:`forward` returns pool3 features ``(n, 2048)``.

    Expects ``(n, 3, 299, 299)`` inputs in ``[-1, 1]`` (see :func:`preprocess`). ``fc`` (1008
    logits) is kept so that the reference weight file loads strictly, but is not used.
    """

    dim = 2048

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
            self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c,
        ):  # fmt: skip
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)


#: the input conventions of three FID tools, each reproduced end to end from genloop's images in
#: [-1, 1] (resize to 299×299, clipping, scaling to the network's input):
#:
#: * ``pytorch-fid`` — bilinear, ``align_corners=False``, on the float image, fed as [-1, 1]
#:   (pytorch-fid maps [0, 1] to ``2x - 1``; a linear map commutes with the resize);
#: * ``torch-fidelity`` — the 8-bit image torch-fidelity requires (``floor(127.5 x + 128)`` clipped
#:   to [0, 255], the ``uint8`` conversion of EDM / StyleGAN), resized by TF1 ``resize_bilinear``
#:   (no half-pixel centres: sample points ``i * in / out``) and fed as ``(u - 128) / 128``;
#: * ``clean-fid`` — the image as floats in [0, 255] (``127.5 (x + 1)``, not quantised, as
#:   clean-fid's generator path), resized per channel by PIL's antialiased bicubic on 32-bit
#:   floats, clipped to [0, 255] and fed as ``(u - 128) / 128``.
RESIZES = ("pytorch-fid", "torch-fidelity", "clean-fid")


def _resize_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 ``resize_bilinear(align_corners=False, half_pixel_centers=False)``: source ``i * in/out``."""
    h, w = x.shape[-2:]

    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(size, dtype=torch.float64, device=x.device) * (n_in / size)
        i0 = pos.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        return i0, i1, (pos - i0).to(x.dtype)

    r0, r1, fr = axis(h)
    c0, c1, fc = axis(w)
    top = x[..., r0, :] * (1 - fr)[:, None] + x[..., r1, :] * fr[:, None]
    return top[..., c0] * (1 - fc) + top[..., c1] * fc


def _to_uint8_values(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] → the 8-bit pixel values ``floor(127.5 x + 128)`` clipped to [0, 255] (as floats)."""
    return torch.floor(x * 127.5 + 128).clamp(0, 255)


def _tool_input(u: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 255] → the network input of torch-fidelity and clean-fid, ``(u - 128) / 128``."""
    return (u - 128) / 128


def preprocess(x: torch.Tensor, resize: str = "pytorch-fid") -> torch.Tensor:
    """Images ``(n, C, H, W)`` in [-1, 1], ``C`` in {1, 3} → the network input ``(n, 3, 299, 299)``.

    Gray images are replicated to three channels. ``resize`` names the tool whose input
    convention is reproduced (:data:`RESIZES`): ``"pytorch-fid"`` (default; bilinear with
    ``align_corners=False``, input in [-1, 1]), ``"torch-fidelity"`` (8-bit quantisation, TF1
    bilinear resize, ``(u - 128) / 128``) or ``"clean-fid"`` (antialiased bicubic on [0, 255]
    floats, clipped to [0, 255], ``(u - 128) / 128``). FIDs computed under different conventions
    differ (Parmar et al. 2022), so compare numbers only under one convention.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"inception features need images (n, C, H, W) with C = 1 or 3, got shape {tuple(x.shape)}")
    if resize not in RESIZES:
        raise ConfigError(f"unknown resize {resize!r}; choose one of {', '.join(RESIZES)}")
    resized = x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE)
    if resize == "pytorch-fid":
        if resized:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    elif resize == "torch-fidelity":
        u = _to_uint8_values(x)
        x = _tool_input(_resize_tf1(u, INPUT_SIZE) if resized else u)
    else:
        u = (x + 1) * 127.5
        if resized:  # torch's antialiased bicubic (a = -0.5) is PIL's BICUBIC filter
            u = F.interpolate(u, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", align_corners=False, antialias=True)
        x = _tool_input(u.clamp(0, 255))
    if x.shape[1] == 1:  # resize once, then replicate (a per-channel operation: same result)
        x = x.expand(-1, 3, -1, -1)
    return x


_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def weights_digest(path: Path) -> str:
    """SHA-256 of a weights file's content, computed once per (path, size, mtime_ns, inode).

    Caches of features and statistics are keyed by it, so two different files with the same
    name and size never share cached numbers.
    """
    import hashlib

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    digest = _DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = _DIGESTS[key] = h.hexdigest()
    return digest


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_fid_state_dict(net: FIDInceptionV3, state: Mapping[str, torch.Tensor], *, source: str = "state dict") -> None:
    """Load pytorch-fid / torch-fidelity Inception weights into ``net``, checking every key.

    ``num_batches_tracked`` buffers (absent from the 2015 files) and ``AuxLogits.*`` (not part
    of the FID network) are ignored; any other missing or unexpected key is a ConfigError.
    """
    state = {k: v for k, v in _strip_prefix(state).items() if not k.startswith("AuxLogits.")}
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConfigError(
            f"{source} is not an FID Inception-v3 state dict: missing keys {missing[:5]} "
            f"({len(missing)} in all), unexpected keys {unexpected[:5]} ({len(unexpected)} in all)"
        )


def find_weights(weights_path: str | None = None, cache_dir: str | None = None) -> Path:
    """The local Inception weight file: ``weights_path``, ``$GENLOOP_INCEPTION_WEIGHTS`` or the cache.

    Raises :class:`ConfigError` naming the file to obtain and where to put it when none exists.
    """
    if weights_path:
        p = Path(weights_path).expanduser()
        if not p.is_file():
            raise ConfigError(f"Inception weights file {str(p)!r} (option weights_path) does not exist")
        return p
    env = os.environ.get("GENLOOP_INCEPTION_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ConfigError(f"Inception weights file {str(p)!r} (GENLOOP_INCEPTION_WEIGHTS) does not exist")
        return p
    folder = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "weights"
    for name in (FID_WEIGHTS_FILE, FIDELITY_WEIGHTS_FILE):
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(
        f"FID Inception weights not found. genloop never downloads them: obtain {FID_WEIGHTS_FILE} "
        f"(pytorch-fid's release, {FID_WEIGHTS_URL}; torch-fidelity's {FIDELITY_WEIGHTS_FILE} also works) "
        f"and put it at {folder / FID_WEIGHTS_FILE}, or pass its path as the option weights_path, "
        f"or set GENLOOP_INCEPTION_WEIGHTS=/path/to/{FID_WEIGHTS_FILE}"
    )


def batched_features(
    net: Callable[[torch.Tensor], torch.Tensor],
    X: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    prep: Callable[[torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """Run ``net(prep(batch))`` over ``X`` in batches under ``no_grad``; float32 numpy output."""
    outs = []
    with torch.no_grad():
        for start in range(0, X.shape[0], batch_size):
            xb = torch.as_tensor(np.ascontiguousarray(X[start : start + batch_size]), dtype=torch.float32)
            xb = prep(xb.to(device))
            outs.append(net(xb).float().cpu().numpy())
    if not outs:
        raise DataError("cannot extract features of an empty set")
    return np.concatenate(outs, axis=0)


_CUSTOM_IDS = itertools.count()


class InceptionFeatures(FeatureExtractor):
    """FID Inception-v3 pool3 features (2048-d) of images in [-1, 1].

    ``net`` may be given directly (tests use a randomly initialised network); otherwise the
    weights are loaded from the local file found by :func:`find_weights`.
    """

    name = "inception"
    dim = 2048

    def __init__(
        self,
        weights_path: str | None = None,
        *,
        batch_size: int = 64,
        device: str = "auto",
        cache_dir: str | None = None,
        net: FIDInceptionV3 | None = None,
        resize: str = "pytorch-fid",
    ) -> None:
        if resize not in RESIZES:
            raise ConfigError(f"unknown resize {resize!r}; choose one of {', '.join(RESIZES)}")
        self.resize = resize
        self.batch_size = batch_size
        self.device = resolve_device(device)
        if net is None:
            path = find_weights(weights_path, cache_dir)
            net = FIDInceptionV3()
            state = torch.load(path, map_location="cpu", weights_only=True)
            load_fid_state_dict(net, state, source=str(path))
            self._id = f"inception-fid:{path.name}:sha256={weights_digest(path)[:32]}"
            logger.info("loaded FID Inception weights from %s", path)
        else:  # a given network never shares caches (a counter: id(net) may be reused after collection)
            self._id = f"inception-fid:custom:{next(_CUSTOM_IDS)}"
        self.net = net.eval().to(self.device)

    @property
    def id(self) -> str:
        """``inception-fid:<file name>:sha256=<content digest>``, plus ``:resize=<tool>`` when not pytorch-fid."""
        return self._id if self.resize == "pytorch-fid" else f"{self._id}:resize={self.resize}"

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 4:
            raise DataError(f"inception features need images (n, C, H, W), got shape {X.shape}")
        return batched_features(self.net, X, batch_size=self.batch_size, device=self.device, prep=self.prep)

    def prep(self, x: torch.Tensor) -> torch.Tensor:
        """The input convention of the chosen tool (:func:`preprocess`)."""
        return preprocess(x, self.resize)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """The 1008 class logits ``pool3 @ fc.weight^T`` without the bias (``(n, 1008)``).

        The original Inception Score code (Salimans et al. 2016) multiplies pool3 by the softmax
        weights and drops the bias; torch-fidelity's ``logits_unbiased`` is the same quantity.
        """
        X = np.asarray(X)
        if X.ndim != 4:
            raise DataError(f"inception logits need images (n, C, H, W), got shape {X.shape}")
        weight = self.net.fc.weight

        def net(x: torch.Tensor) -> torch.Tensor:
            return self.net(x) @ weight.T

        return batched_features(net, X, batch_size=self.batch_size, device=self.device, prep=self.prep)


__all__ = [
    "FIDInceptionV3",
    "InceptionFeatures",
    "find_weights",
    "load_fid_state_dict",
    "preprocess",
    "weights_digest",
    "FID_WEIGHTS_FILE",
    "RESIZES",
]
