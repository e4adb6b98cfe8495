"""Sample grids for the report (the drawing itself is :mod:`genloop._grids`, shared with the run
store, which writes each generation's grid)."""

from genloop._grids import make_grid, save_sample_grid

__all__ = ["make_grid", "save_sample_grid"]
