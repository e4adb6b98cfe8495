"""Diffusion families: ``ddpm`` (Ho et al. 2020, DDIM sampling) and ``edm`` (Karras et al. 2022).

Schedules, per-example objectives and samplers are separate pure-torch modules
(:mod:`.schedules`, :mod:`.objectives`, :mod:`.samplers`) that take plain callables, so they
are tested against closed forms with exact Gaussian denoisers; :mod:`.ddpm` and :mod:`.edm`
register the model families on the shared neural base.
"""

from genloop.models.diffusion.ddpm import DDPM
from genloop.models.diffusion.edm import EDM

__all__ = ["DDPM", "EDM"]
