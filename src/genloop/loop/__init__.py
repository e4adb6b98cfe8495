"""The retraining engine: schemes, variants, the generation loop and its records."""

from genloop.loop.engine import GenerationRecord, LoopState, evaluate, run_loop
from genloop.loop.schemes import SCHEMES, assemble, parse_lambda, synthetic_count
from genloop.loop.variants import VARIANTS, parse_variant

__all__ = [
    "GenerationRecord", "LoopState", "evaluate", "run_loop", "SCHEMES", "assemble", "parse_lambda", "synthetic_count",
    "VARIANTS", "parse_variant",
]
