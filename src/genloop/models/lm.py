"""A small causal Transformer language model over token sequences (``transformer-lm``).

The model is p_θ(x_0 … x_{L-1}) = Π_i softmax(f_θ(BOS, x_0 … x_{i-1}))[x_i]: token and learned
position embeddings, ``n_layers`` pre-norm Transformer blocks with a causal mask, a final layer
norm and a linear head over the V tokens (GPT-2's layout, GPT-2's N(0, 0.02) initialisation
drawn from the run's generator). It is trained by the shared neural trainer
(:func:`genloop.models.neural.trainer.train`, via :class:`TorchGenerativeModel`) on the mean
next-token cross-entropy of each sequence, so warm starts, budgets, EMA and checkpoints are the
same as for the other neural families.

Sampling is ancestral, left to right, with a ``temperature`` and nucleus (``top_p``, Holtzman
et al. 2020) truncation: the distortions of the sampler that Shumailov et al. (2024) show
accelerate the loss of the tails. :meth:`TransformerLM.log_prob` is the network's own law
(temperature 1, no truncation), which the ``perplexity`` metric uses.

Token arrays follow :mod:`genloop.data.discrete`: float codes ``(n, L)``; the model space is the
codes themselves (no standardisation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
import torch
from torch import nn
from torch.nn import functional as F
from typing_extensions import Self

from genloop._validation import check_option
from genloop.data.discrete import as_tokens
from genloop.errors import ConfigError
from genloop.models import register_model
from genloop.models.base import GenerativeModel
from genloop.models.categorical import resolve_vocab
from genloop.models.neural.base import TorchGenerativeModel
from genloop.models.neural.networks import untouched_global_rng
from genloop.models.neural.trainer import TrainConfig

__all__ = ["TransformerConfig", "CausalTransformer", "TransformerLM", "top_p_filter"]


class TransformerConfig(pydantic.BaseModel):
    """Option group of the network: width, heads, depth, feed-forward width (default 4×width)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    d_model: int = pydantic.Field(64, ge=1)
    n_heads: int = pydantic.Field(4, ge=1)
    n_layers: int = pydantic.Field(2, ge=1)
    d_ff: int | None = pydantic.Field(None, ge=1)
    dropout: float = pydantic.Field(0.0, ge=0, lt=1)

    @pydantic.model_validator(mode="after")
    def _heads_divide(self) -> TransformerConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        return self


class CausalTransformer(nn.Module):
    """Logits ``(B, L, V)`` of every next token of ``tokens`` ``(B, L)`` (input shifted right by BOS)."""

    def __init__(self, vocab_size: int, seq_len: int, cfg: TransformerConfig) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.bos = vocab_size  # an extra embedding row
        self.tok = nn.Embedding(vocab_size + 1, cfg.d_model)
        self.pos = nn.Embedding(seq_len, cfg.d_model)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.n_heads, cfg.d_ff or 4 * cfg.d_model, cfg.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq_len), persistent=False)

    def reset_parameters_with(self, generator: torch.Generator) -> None:
        """GPT-2's initialisation from ``generator``: weights N(0, 0.02²), biases 0, norms 1/0."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if ".norm" in name or name.startswith("norm"):
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, L = tokens.shape
        bos = torch.full((B, 1), self.bos, dtype=torch.long, device=tokens.device)
        inp = torch.cat([bos, tokens[:, :-1]], dim=1)
        h = self.tok(inp) + self.pos(torch.arange(L, device=tokens.device))[None]
        h = self.blocks(h, mask=self.mask[:L, :L].to(h.dtype), is_causal=True)
        return self.head(self.norm(h))


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus truncation of each row of ``probs`` ``(B, V)``: keep the most probable tokens whose
    cumulative mass first reaches ``top_p`` (always at least one), renormalised."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = torch.sort(probs, dim=-1, descending=True)
    keep_sorted = (torch.cumsum(sorted_p, dim=-1) - sorted_p) < top_p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    out = torch.where(keep, probs, torch.zeros_like(probs))
    return out / out.sum(dim=-1, keepdim=True)


@register_model("transformer-lm")
class TransformerLM(TorchGenerativeModel):
    """Causal Transformer LM over sequences ``(n, L)`` of V tokens (module docstring).

    Args:
        network: the Transformer's sizes (:class:`TransformerConfig`).
        train: the shared trainer's options (budget, batch, lr, EMA, warm-start carry-over).
        vocab_size: V; ``None`` takes it from the warm-start model, else max code + 1.
        temperature: sampling temperature (> 0; 0 = greedy argmax).
        top_p: nucleus sampling mass in (0, 1] (1 = no truncation).
        sample_batch_size: sequences per sampling batch.
    """

    has_log_prob = True
    amp_safe = True

    network: TransformerConfig  # type: ignore[assignment]

    def __init__(
        self,
        network: TransformerConfig = TransformerConfig(),
        train: TrainConfig = TrainConfig(samples=50_000, batch_size=64, lr=1e-3),
        vocab_size: int | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        sample_batch_size: int = 1024,
    ) -> None:
        check_option("temperature", temperature, ge=0, finite=True)
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")
        if vocab_size is not None and vocab_size < 1:
            raise ConfigError(f"vocab_size must be >= 1, got {vocab_size}")
        if sample_batch_size < 1:
            raise ConfigError(f"sample_batch_size must be >= 1, got {sample_batch_size}")
        self.network = network
        self.train = train
        self.vocab_size = vocab_size
        self.temperature = temperature
        self.top_p = top_p
        self.sample_batch_size = sample_batch_size

    # ---- the pieces a neural family implements -------------------------------------------
    def build_net(self, event_shape: tuple[int, ...], generator: torch.Generator | None) -> nn.Module:
        if len(event_shape) != 1:
            raise ConfigError(f"the language model takes sequences (n, L), got events of shape {event_shape}")
        with untouched_global_rng():  # torch's constructors draw a default init we overwrite
            net = CausalTransformer(self.vocab_size_, int(event_shape[0]), self.network)
        net.reset_parameters_with(generator if generator is not None else torch.Generator().manual_seed(0))
        return net

    def loss(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mean next-token cross-entropy of each sequence, ``(B,)`` nats per token."""
        tokens = x.long()
        logits = net(tokens)
        ce = F.cross_entropy(logits.float().transpose(1, 2), tokens, reduction="none")
        return ce.mean(dim=1)

    def generate(self, net: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        """Ancestral sampling, one position at a time, with temperature and top-p."""
        L = self.event_shape_[0]
        device = self.device_of(net)
        tokens = torch.zeros((n, L), dtype=torch.long, device=device)
        for i in range(L):
            logits = net(tokens[:, : i + 1])[:, i].float()  # causal: later positions are ignored
            if self.temperature == 0:
                tokens[:, i] = logits.argmax(dim=-1)
                continue
            probs = top_p_filter(torch.softmax(logits / self.temperature, dim=-1), self.top_p)
            tokens[:, i] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return tokens.to(torch.float64)

    def _fit_scaling(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(X.shape[1:]), np.ones(X.shape[1:])  # tokens are used as they are

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        """Before a run writes anything: events must be sequences ``(L,)``."""
        if len(event_shape) != 1:
            raise ConfigError(f"transformer-lm takes token sequences (n, L), the data have events of shape {event_shape}")
        if n < 2:
            raise ConfigError(f"transformer-lm needs at least 2 training sequences, data.n = {n}")

    # ---- fit / likelihood / state ----------------------------------------------------------
    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """Train on token sequences ``X`` ``(n, L)``; V from the option, the warm start, or the data."""
        tokens = as_tokens(X, vocab_size=self.vocab_size, min_samples=2)
        if init is not None and not isinstance(init, TransformerLM):
            raise ConfigError(f"warm start of the language model needs a transformer-lm init, got {type(init).__name__}")
        self.vocab_size_ = resolve_vocab(tokens, self.vocab_size, init, "vocab_size_")
        if init is not None and init.is_fitted and self.vocab_size_ != init.vocab_size_ and "weights" in self.train.carry_over:
            raise ConfigError(f"warm start: the data have {self.vocab_size_} tokens, the init model {init.vocab_size_}; set vocab_size")
        return super().fit(tokens.astype(np.float64), rng=rng, init=init)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """log p_θ(x) = Σ_i log softmax(f_θ)[x_i] per sequence (the network's law, temperature 1)."""
        self._check_fitted()
        tokens = as_tokens(X, vocab_size=self.vocab_size_, hint="; set the model's vocab_size to the size of the data's vocabulary")
        if tokens.shape[1] != self.event_shape_[0]:
            raise ConfigError(f"sequences have length {tokens.shape[1]}, the model was fitted on {self.event_shape_[0]}")
        net, device = self._prepare_net()
        out = []
        with torch.no_grad():
            for start in range(0, tokens.shape[0], self.sample_batch_size):
                t = torch.as_tensor(tokens[start : start + self.sample_batch_size], device=device)
                logp = torch.log_softmax(net(t).double(), dim=-1)
                out.append(logp.gather(-1, t[..., None])[..., 0].sum(dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = super().get_state()
        return arrays, {**meta, "vocab_size": int(self.vocab_size_)}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.vocab_size_ = int(meta["vocab_size"])
        super().set_state(arrays, meta)
