"""Run folders: resolved config, per-generation metrics, checkpoints, samples, status, lock."""

from genloop.store.run import RunStore, atomic_write_text

__all__ = ["RunStore", "atomic_write_text"]
