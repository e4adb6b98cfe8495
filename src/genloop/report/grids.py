"""Sample grids for the report: the store's grid writer (:mod:`genloop.store.grids`)."""

from genloop.store.grids import make_grid, save_sample_grid

__all__ = ["make_grid", "save_sample_grid"]
