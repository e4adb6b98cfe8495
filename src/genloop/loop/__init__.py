"""The retraining engine: schemes, the generation loop and its records."""

from genloop.loop.engine import GenerationRecord, LoopState, evaluate, run_loop
from genloop.loop.schemes import SCHEMES, assemble, parse_lambda, synthetic_count

__all__ = ["GenerationRecord", "LoopState", "evaluate", "run_loop", "SCHEMES", "assemble", "parse_lambda", "synthetic_count"]
