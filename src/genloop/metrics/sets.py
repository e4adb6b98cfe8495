"""Feature metrics between two sets of samples (the library behind ``genloop eval A B``, like ``python -m pytorch_fid``).

``A`` is the generated set and ``B`` the real (reference) set: precision is the fraction of
``A`` inside ``B``'s k-NN manifold, recall the converse (FID and KID are symmetric). Each of
them may be

* a folder of images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.webp``, read in sorted order,
  streamed from disk in batches; gray images stay one channel, others become RGB; all of one
  size);
* an ``.npy`` (read memory-mapped) or ``.npz`` of images ``(n, C, H, W)`` in [-1, 1] (``uint8``
  arrays are 0..255 pixels and converted by ``x / 127.5 - 1``) or of feature vectors ``(n, d)``;
* a genloop run folder (its last generation's evaluation samples, ``RUN/samples/gen_XXXX.npy``)
  or ``RUN:N`` for generation ``N``;
* a statistics file ``.npz`` with ``mu`` and ``sigma`` (pytorch-fid's and clean-fid's format;
  FID only).

Features default to ``raw`` when both inputs are feature vectors and to ``inception`` (local
FID Inception weights, ``--weights``) for images. The statistics of image sets are cached by
the files' names, sizes, modification times and inodes and the extractor (whose id holds a
digest of the weights' content) (``<cache>/stats``, at most
1 GiB, least recently used entries evicted); ``--no-cache`` skips the cache. ``--save-stats
PATH.npz`` writes ``A``'s statistics in pytorch-fid's format.

This module imports torch only when a metric is computed.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genloop.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
METRIC_NAMES = ("fid", "kid", "prdc", "is")


@dataclass
class Source:
    """One side of ``genloop eval``: images (streamed), feature vectors, or statistics only."""

    spec: str
    kind: str  # "images", "features" or "stats"
    n: int
    batches: Any = None  # callable(batch_size) -> iterator of arrays (images or features)
    stats: tuple[np.ndarray, np.ndarray, int | None] | None = None
    identity: str = ""  # what the statistics cache key is made of
    shape: tuple[int, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        if self.kind == "stats":
            return f"{self.spec} (statistics, dim {self.stats[0].shape[0] if self.stats else '?'})"
        return f"{self.spec} ({self.n} {self.kind}, shape {self.shape})"


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L") if im.mode in ("L", "1", "I;16", "I") else im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: UnidentifiedImageError, truncated data, bad chunks
        raise DataError(f"image {path} cannot be read ({type(exc).__name__}: {exc}); remove or replace it") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _image_shape(path: Path) -> tuple[int, int, int]:
    """(C, H, W) of an image as :func:`_read_image` returns it, from its header, checking the
    file's structure (PIL's ``verify``: chunk checksums, no pixel decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
            im.verify()
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"image {path} cannot be read ({type(exc).__name__}: {exc}); remove or replace it") from None
    return (1 if mode in ("L", "1", "I;16", "I") else 3, h, w)


def _folder_source(spec: str, folder: Path) -> Source:
    files = _image_files(folder)
    if not files:
        raise DataError(f"{spec}: no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    shapes = {p: _image_shape(p) for p in files}  # every file checked before any work is done
    for p, shape in shapes.items():
        if shape != shapes[files[0]]:
            raise DataError(f"{spec}: image {p.name} has shape {shape} (C, H, W), the first image "
                            f"{shapes[files[0]]}; resize all images of a folder to one size")
    first = _read_image(files[0])

    def batches(batch_size: int) -> Iterator[np.ndarray]:
        for s in range(0, len(files), batch_size):
            arrs = [_read_image(p) for p in files[s : s + batch_size]]
            for p, a in zip(files[s : s + batch_size], arrs):
                if a.shape != first.shape:
                    raise DataError(
                        f"{spec}: image {p.name} has shape {a.shape} (C, H, W), the first image {first.shape}; "
                        f"resize all images of a folder to one size"
                    )
            yield np.stack(arrs).astype(np.float32) / 127.5 - 1.0

    stamp = "|".join(f"{p.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}" for p in files for st in (p.stat(),))
    return Source(spec, "images", len(files), batches, identity=f"folder:{folder.resolve()}|{stamp}",
                  shape=(len(files), *first.shape))  # fmt: skip


def _array_source(spec: str, arr: np.ndarray, identity: str, channels_last: bool) -> Source:
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)):
        raise DataError(f"{spec}: arrays must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 4 and channels_last:
        arr = arr.transpose(0, 3, 1, 2)
    if arr.ndim == 2:
        kind = "features"
    elif arr.ndim == 4:
        kind = "images"
        if arr.shape[1] not in (1, 3) and arr.shape[-1] in (1, 3):
            raise DataError(f"{spec}: images of shape {arr.shape} look channels-last (n, H, W, C); pass --channels-last")
    else:
        raise DataError(f"{spec}: expected images (n, C, H, W) or features (n, d), got shape {arr.shape}")
    pixels = arr.dtype == np.uint8

    def batches(batch_size: int) -> Iterator[np.ndarray]:
        for s in range(0, arr.shape[0], batch_size):
            b = np.asarray(arr[s : s + batch_size])
            yield b.astype(np.float32) / 127.5 - 1.0 if pixels and kind == "images" else b

    return Source(spec, kind, int(arr.shape[0]), batches, identity=identity, shape=tuple(arr.shape))


def _file_identity(path: Path) -> str:
    st = path.stat()
    return f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def open_source(spec: str, *, channels_last: bool = False) -> Source:
    """Resolve one ``genloop eval`` input (see the module docstring) without reading it all."""
    generation: int | None = None
    path = Path(spec)
    if not path.exists() and ":" in spec:
        head, _, tail = spec.rpartition(":")
        if tail.isdigit() and Path(head).is_dir():
            path, generation = Path(head), int(tail)
    if not path.exists():
        raise DataError(f"{spec}: no such file or folder")
    if path.is_dir():
        if (path / "status.json").is_file() and (path / "samples").is_dir():
            files = sorted((path / "samples").glob("gen_*.npy"))
            if not files:
                raise DataError(f"{spec}: run folder has no evaluation samples in samples/")
            chosen = files[-1] if generation is None else path / "samples" / f"gen_{generation:04d}.npy"
            if not chosen.is_file():
                raise DataError(f"{spec}: run folder has no samples of generation {generation}: "
                                f"available {[p.stem for p in files]}")  # fmt: skip
            arr = np.load(chosen, mmap_mode="r", allow_pickle=False)
            return _array_source(f"{spec} ({chosen.stem})", arr, _file_identity(chosen), channels_last)
        return _folder_source(spec, path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{spec}: cannot read .npy ({exc})") from None
        return _array_source(spec, arr, _file_identity(path), channels_last)
    if suffix == ".npz":
        from genloop.metrics._arrays import load_npz

        arrays = load_npz(path, what=spec)
        if "mu" in arrays or "sigma" in arrays:
            from genloop.metrics.frechet import stats_from_arrays

            mu, sigma, n = stats_from_arrays(arrays, spec)
            return Source(spec, "stats", n or 0, stats=(mu, sigma, n), shape=(mu.shape[0],))
        if len(arrays) != 1:
            raise DataError(f"{spec}: .npz must hold 'mu' and 'sigma' (statistics) or exactly one array, has {sorted(arrays)}")
        return _array_source(spec, next(iter(arrays.values())), _file_identity(path), channels_last)
    if suffix.lower() in IMAGE_SUFFIXES:
        raise DataError(f"{spec}: a single image; pass the folder that holds the images")
    raise DataError(f"{spec}: not an image folder, .npy, .npz or run folder")


def _save_stats(path: str, stats: Any) -> None:
    """Write A's statistics (atomically: a failure leaves nothing half-written); a full disk
    or an unwritable folder is a one-line error, as in ``genloop run``."""
    from genloop._fs import is_disk_full
    from genloop.errors import DiskFullError
    from genloop.metrics.frechet import save_fid_npz

    try:
        save_fid_npz(path, stats)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(f"the disk holding {path} is full; the statistics were not written "
                                "(nothing half-written): free some space and run again") from None
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None


def _features_of(src: Source, extractor: Any, batch_size: int) -> np.ndarray:
    from genloop.metrics.images import check_images

    out = []
    for batch in src.batches(batch_size):
        if src.kind == "images" and extractor.name != "raw":
            batch = check_images(batch, src.spec)
        out.append(np.asarray(extractor(batch), dtype=np.float32 if extractor.name != "raw" else np.float64))
    if not out:
        raise DataError(f"{src.spec}: no samples")
    return np.concatenate(out)


def _stats_key(src: Source, extractor_id: str) -> str:
    return hashlib.blake2b(f"eval|{src.identity}|{extractor_id}".encode(), digest_size=20).hexdigest()


def evaluate(
    a: Source,
    b: Source,
    *,
    metrics: list[str],
    features: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    weights_path: str | None = None,
    use_cache: bool = True,
    cache_dir: str | None = None,
    resize: str = "pytorch-fid",
    k: int = 3,
    rng: np.random.Generator | None = None,
    save_stats: str | None = None,
) -> dict[str, float]:
    """The metrics between generated ``a`` and real ``b`` (the work of ``genloop eval``)."""
    from genloop.metrics.features import make_extractor
    from genloop.metrics.frechet import FeatureStats, StatsCache, frechet_distance_features, stats_from_moments

    rng = rng if rng is not None else np.random.default_rng(0)
    fid_rng, kid_rng = rng.spawn(2)  # one stream per metric: each value independent of the others asked for
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ConfigError(f"unknown metrics {unknown}; choose from {', '.join(METRIC_NAMES)}")
    kinds = {a.kind, b.kind}
    if features is None:
        features = "raw" if kinds <= {"features", "stats"} else "inception"
    if "features" in kinds and features != "raw":
        raise ConfigError(f"inputs holding feature vectors need --features raw (got {features})")
    if "stats" in kinds and set(metrics) - {"fid"}:
        raise ConfigError(f"a statistics file supports only --metrics fid (asked for {', '.join(metrics)})")
    if "is" in metrics and a.kind != "images":
        raise ConfigError("the Inception Score needs images as the first input A")
    extractor = make_extractor(features, batch_size=batch_size, device=device, weights_path=weights_path,
                               cache_dir=cache_dir, resize=resize)  # fmt: skip
    cache = None
    if use_cache:
        from genloop.metrics._arrays import default_cache_dir

        cache = StatsCache((Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "stats")
    need_features = bool(set(metrics) & {"kid", "prdc"}) or save_stats is not None
    feats: dict[str, np.ndarray] = {}
    stats: dict[str, FeatureStats] = {}
    for name, src in (("a", a), ("b", b)):
        if src.kind == "stats":
            assert src.stats is not None
            stats[name] = stats_from_moments(*src.stats)
            continue
        key = _stats_key(src, extractor.id)
        cached = cache.get(key) if cache is not None and not need_features and src.kind == "images" else None
        if cached is not None and cached.n <= cached.dim:
            cached = None  # rank-deficient: FID takes the cross-Gram route, which needs the features
        if cached is not None:
            stats[name] = cached
            logger.info("%s: statistics from the cache", src.spec)
            continue
        feats[name] = _features_of(src, extractor, batch_size)
        stats[name] = FeatureStats.from_features(feats[name], batch_size=4096)
        if cache is not None and src.kind == "images":
            cache.put(key, stats[name], {"source": src.spec, "extractor": extractor.id})
    if save_stats is not None:
        _save_stats(save_stats, stats["a"])
    out: dict[str, float] = {}
    if "fid" in metrics:
        sa, sb = stats["a"], stats["b"]
        if sa.dim != sb.dim:
            raise DataError(f"feature dimensions differ: A {sa.dim}, B {sb.dim}")
        if "a" in feats and "b" in feats and min(sa.n, sb.n) <= sa.dim:
            out["fid"] = frechet_distance_features(generated=feats["a"], real=feats["b"])
        else:
            from genloop.metrics.frechet import frechet_distance_from_moments

            for what, st in (("A", sa), ("B", sb)):
                if st.n <= st.dim:
                    logger.warning("%s: %d samples for %d-dimensional features: a rank-deficient covariance; "
                                   "the FID is computed but has a large bias", what, st.n, st.dim)  # fmt: skip
            out["fid"] = frechet_distance_from_moments(sa.mean, sa.cov, sb.mean, sb.cov)
        if "a" in feats:
            from genloop.metrics.frechet import split_se

            out["fid_se"] = split_se(feats["a"], sb, rng=fid_rng)  # NaN when a half has n <= dim
    if "kid" in metrics:
        from genloop.metrics.prdc import kid

        m = min(1000, feats["a"].shape[0], feats["b"].shape[0])
        res = kid(generated=feats["a"], real=feats["b"], subset_size=m, rng=kid_rng, device=device)
        out.update({"kid": res["kid"], "kid_se": res["kid_se"]})
    if "prdc" in metrics:
        from genloop.metrics.prdc import prdc

        out.update(prdc(generated=feats["a"], real=feats["b"], k=k, device=device))
    if "is" in metrics:
        from genloop.metrics.features.inception import InceptionFeatures
        from genloop.metrics.inception_score import inception_score

        net = extractor if isinstance(extractor, InceptionFeatures) else make_extractor(
            "inception", batch_size=batch_size, device=device, weights_path=weights_path, cache_dir=cache_dir,
            resize=resize)  # fmt: skip
        logits = np.concatenate([net.logits(x) for x in a.batches(batch_size)])  # type: ignore[attr-defined]
        out.update(inception_score(logits, n_splits=min(10, logits.shape[0])))
    return out


def format_result(result: dict[str, float]) -> str:
    """A two-column table of the metric values, standard errors beside their values."""
    rows = [(k, v, result.get(f"{k}_se")) for k, v in result.items() if not k.endswith(("_se", "_std"))]
    width = max(len(k) for k, _, _ in rows) if rows else 6
    lines = [f"{'metric':<{width}}  {'value':>14}  {'std. error':>12}"]
    for key, value, se in rows:
        se_text = f"{se:>12.4g}" if se is not None and math.isfinite(se) else f"{'':>12}"
        lines.append(f"{key:<{width}}  {value:>14.6g}  {se_text}")
    return "\n".join(lines)


__all__ = ["evaluate", "open_source", "Source", "format_result", "IMAGE_SUFFIXES", "METRIC_NAMES"]
