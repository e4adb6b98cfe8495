"""Hugging Face causal language models in the loop (``hf-causal-lm``), e.g. GPT-2 or OPT.

The network is any ``transformers`` causal LM, built either from a config (``config: {model_type:
gpt2, n_layer: 2, ...}``, randomly initialised from the run's seed) or from a local checkpoint
folder (``pretrained: PATH``, read with ``local_files_only=True``: nothing is ever downloaded). That
is the setting of Shumailov et al. (2024), who fine-tuned OPT-125m on its own text generation
after generation; on a GPU give ``pretrained`` a saved OPT/GPT-2 folder and the data as token ids of
that checkpoint's tokenizer (an ``(n, L)`` integer ``.npy`` array read by the ``npy`` source).

Everything else is :class:`genloop.models.lm.TransformerLM`: the same per-sequence next-token
cross-entropy, the shared neural trainer (budgets, warm starts, EMA, checkpoints as safetensors),
ancestral sampling with temperature / top-p and an exact ``log_prob``. A sequence is predicted
from a BOS token (``bos_token_id``, default the config's when it is in the vocabulary, else the
last id). The special tokens (that BOS, and the config's BOS / EOS / padding ids) get
probability 0 (``mask_special``): a sample is always data. ``transformers`` is imported only
when a network is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from typing_extensions import Self

from genloop._validation import check_option
from genloop.data.discrete import as_tokens
from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models.base import GenerativeModel
from genloop.models.lm import TransformerLM
from genloop.models.neural.trainer import TrainConfig

__all__ = ["HFCausalLM", "HFLogits"]


class HFLogits(nn.Module):
    """Wraps a ``transformers`` causal LM: logits ``(B, L, V)`` of each next token of ``tokens``
    ``(B, L)``, the input shifted right by ``bos``. The logits of the ``masked`` ids (the
    special tokens: BOS, EOS, padding) are −∞, so the law p_θ(x_i | x_<i) = softmax(logits)
    gives them probability 0: they are never sampled as data, and ``log_prob`` and the
    training loss are those of the same (renormalised) law."""

    def __init__(self, model: nn.Module, bos: int, masked: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.model = model
        self.bos = bos
        self.masked = tuple(sorted(set(masked)))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        bos = torch.full((tokens.shape[0], 1), self.bos, dtype=torch.long, device=tokens.device)
        inp = torch.cat([bos, tokens[:, :-1]], dim=1)
        logits = self.model(input_ids=inp, use_cache=False).logits
        if self.masked:
            idx = torch.tensor(self.masked, dtype=torch.long, device=logits.device)
            logits = logits.index_fill(-1, idx, float("-inf"))
        return logits


#: The config fields that name special tokens (never data).
SPECIAL_TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "sep_token_id")


def special_token_ids(cfg: Any, bos: int) -> tuple[int, ...]:
    """The ids of ``cfg``'s special tokens inside its vocabulary, and ``bos`` (the id that
    starts every sequence, which may be a fallback the config does not name)."""
    V = int(cfg.vocab_size)
    ids = {int(bos)}
    for field in SPECIAL_TOKEN_FIELDS:
        value = getattr(cfg, field, None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < V:
                ids.add(v)
    return tuple(sorted(ids))


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:  # pragma: no cover - an optional dependency
        raise ConfigError("model 'hf-causal-lm' needs the transformers package: pip install 'genloop[hf]'") from None
    transformers.logging.set_verbosity_error()
    return transformers


@register_model("hf-causal-lm")
class HFCausalLM(TransformerLM):
    """A ``transformers`` causal LM behind genloop's LM contract (module docstring).

    Args:
        config: keyword arguments of ``AutoConfig.for_model`` (``model_type`` required), for a
            randomly initialised network.
        pretrained: a local checkpoint folder (``save_pretrained`` output) that generation 0
            starts from (fine-tuned on the real data).
        bos_token_id: the id that starts every sequence (default: see the module docstring).
        train: the shared trainer's options.
        temperature, top_p, sample_batch_size: as for ``transformer-lm``.
        mask_special: give the special tokens (BOS, EOS, padding of the config, and the BOS
            id in use) probability 0 (:class:`HFLogits`), so that samples are data; data that
            contain one are refused. ``False`` models them as ordinary tokens.
    """

    name = "hf-causal-lm"  # set here: the registry does not override the parent's name

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        pretrained: str | None = None,
        bos_token_id: int | None = None,
        train: TrainConfig = TrainConfig(samples=50_000, batch_size=32, lr=5e-5),
        temperature: float = 1.0,
        top_p: float = 1.0,
        sample_batch_size: int = 256,
        mask_special: bool = True,
    ) -> None:
        if (config is None) == (pretrained is None):
            raise ConfigError(
                "hf-causal-lm needs exactly one of config (a transformers config) and pretrained (a local checkpoint folder)"
            )
        if config is not None and "model_type" not in config:
            raise ConfigError("hf-causal-lm config needs a model_type (e.g. gpt2, opt)")
        check_option("temperature", temperature, ge=0, finite=True)
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")
        check_option("sample_batch_size", sample_batch_size, ge=1)
        self.config = config
        self.pretrained = pretrained
        self.bos_token_id = bos_token_id
        self.train = train
        self.temperature = temperature
        self.top_p = top_p
        self.sample_batch_size = sample_batch_size
        self.mask_special = mask_special

    # ---- the network ----------------------------------------------------------------------
    def hf_config(self) -> Any:
        """The ``transformers`` config of the network (read from ``pretrained`` or built from ``config``)."""
        tf = _transformers()
        if self.pretrained is not None:
            try:
                return tf.AutoConfig.from_pretrained(self.pretrained, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"hf-causal-lm pretrained: cannot read a transformers checkpoint from {self.pretrained!r}: {exc}") from None
        cfg = dict(self.config or {})
        try:
            return tf.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"hf-causal-lm config: {exc}") from None

    def _bos(self, cfg: Any) -> int:
        V = int(cfg.vocab_size)
        bos = self.bos_token_id if self.bos_token_id is not None else getattr(cfg, "bos_token_id", None)
        if bos is None or not 0 <= int(bos) < V:
            bos = V - 1
        return int(bos)

    def build_net(self, event_shape: tuple[int, ...], generator: torch.Generator | None) -> nn.Module:
        if len(event_shape) != 1:
            raise ConfigError(f"hf-causal-lm takes token sequences (n, L), got events of shape {event_shape}")
        tf = _transformers()
        cfg = self.hf_config()
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item()) if generator is not None else 0
        with torch.random.fork_rng(devices=[]):  # transformers initialises from the global RNG:
            torch.manual_seed(seed)  # seed it inside a fork, so the caller's RNG is untouched
            if self.pretrained is not None:
                model = tf.AutoModelForCausalLM.from_pretrained(self.pretrained, local_files_only=True, dtype=torch.float32)
            else:
                model = tf.AutoModelForCausalLM.from_config(cfg)
        bos = self._bos(cfg)
        return HFLogits(model.float(), bos, special_token_ids(cfg, bos) if self.mask_special else ())

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        """Before a run writes anything: sequences no longer than the network's context."""
        super().check_data(event_shape, n)
        cfg = self.hf_config()
        context = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        if context is not None and event_shape[0] > int(context):
            raise ConfigError(f"sequences of length {event_shape[0]} exceed the network's context of {context} tokens")

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """Train on token ids ``X`` ``(n, L)`` (ids of the network's vocabulary)."""
        V = int(self.hf_config().vocab_size)
        tokens = as_tokens(X, vocab_size=V, min_samples=2, hint=" of the network")
        if init is not None and not isinstance(init, HFCausalLM):
            raise ConfigError(f"warm start of hf-causal-lm needs an hf-causal-lm init, got {type(init).__name__}")
        self.vocab_size_ = V
        self.check_data(tokens.shape[1:], tokens.shape[0])
        if self.mask_special:
            cfg = self.hf_config()
            special = special_token_ids(cfg, self._bos(cfg))
            found = sorted(set(np.unique(tokens).tolist()) & set(special))
            if found:
                raise DataError(
                    f"the data contain the network's special token id(s) {found} (BOS, EOS or padding: {list(special)}), "
                    "which the model never samples; give the config a vocab_size above the data's largest id (the BOS "
                    "then takes the last id), set bos_token_id outside the data, or set mask_special: false"
                )
        return super(TransformerLM, self).fit(tokens.astype(np.float64), rng=rng, init=init)
