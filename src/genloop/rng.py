"""Explicit, splittable randomness.

A run has one integer seed. Every generation and every stage inside it (drawing synthetic
data, fitting, evaluating, drawing fresh real data) gets its own independent stream derived
from ``(seed, generation, stage)`` with :class:`numpy.random.SeedSequence`. A stream therefore
does not depend on how many numbers earlier stages consumed, which is what makes a resumed run
bit-identical to an uninterrupted one. Library code never touches global seeds.
"""

from __future__ import annotations

import zlib

import numpy as np

STAGES = ("data", "fit", "sample", "eval", "fresh", "subsample", "init", "curate", "correct", "mixture", "reward")


def _stage_key(stage: str) -> int:
    # crc32 is stable across processes and Python versions (unlike hash()).
    return zlib.crc32(stage.encode("utf-8"))


def stage_seed_sequence(seed: int, generation: int, stage: str) -> np.random.SeedSequence:
    """The seed sequence of ``stage`` at ``generation`` for a run with ``seed``."""
    if generation < 0:
        raise ValueError(f"generation must be >= 0, got {generation}")
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(int(generation), _stage_key(stage)))


def stage_rng(seed: int, generation: int, stage: str) -> np.random.Generator:
    """An independent numpy Generator for ``stage`` at ``generation`` of a run with ``seed``."""
    return np.random.default_rng(stage_seed_sequence(seed, generation, stage))


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Accept a Generator, an int seed or None (fresh entropy) and return a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def torch_seed(rng: np.random.Generator) -> int:
    """Draw a 63-bit seed from ``rng`` for a ``torch.Generator`` (``g.manual_seed(torch_seed(rng))``)."""
    return int(rng.integers(0, 2**63 - 1))
