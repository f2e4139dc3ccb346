"""BARCOR (Wang et al., 2022): one BART model for both recommendation and conversation.

* The BART **encoder** reads the dialogue context; its mean-pooled states, projected, score every
  catalogue item (cross-entropy on the movie the recommender named): the recommender.
* The BART **decoder** writes the reply template (movies are a ``<movie>`` slot that the
  top-ranked item fills): the generator. Both share the encoder and are trained in two stages
  (recommendation, then conversation), as in the paper.
* A **lightweight knowledge graph** grounds the items: an item's vector is its own embedding plus
  the mean of its graph neighbours' (genres, cast, director, writer), one parameter-free
  aggregation, no relational weights (unlike UniCRS's R-GCN).

Backbone: ``cfg.backbone`` names a BART directory or hub id (paper profile ``facebook/bart-base``).
No pre-trained BART is available offline, so the CPU profile (``backbone="scratch"``) builds a
small BART from a ``BartConfig`` and trains it from its random initialisation, with the packaged
SmolLM2 tokenizer: it is NOT pre-trained, and tables must say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rso_lib.baselines.common import PLMBase, local_only, resolve_causal_lm
from rso_lib.baselines.examples import Example, format_context
from rso_lib.baselines.kg import KG
from rso_lib.data.records import Turn

SCRATCH = "scratch"


@dataclass
class BARCORConfig:
    """BARCOR hyper-parameters.

    Attributes:
        backbone: ``"scratch"`` (small BART from its configuration, not pre-trained) or a BART
            directory / hub id (``"facebook/bart-base"`` in the paper profile).
        tokenizer: tokenizer for ``"scratch"`` (default ``"embedded"``: SmolLM2's BPE).
        d_model / layers / heads / ffn: the scratch BART's size (defaults 128 / 2 / 4 / 256).
        kg_source: ``"redial"`` | ``"inspired"`` (see :mod:`rso_lib.baselines.kg`).
        max_context_turns / max_context_tokens / max_response_tokens: input limits (6 / 96 / 40).
        dropout: BART dropout (default 0.1).
    """

    backbone: str = SCRATCH
    tokenizer: str = "embedded"
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    kg_source: str = "redial"
    max_context_turns: int = 6
    max_context_tokens: int = 96
    max_response_tokens: int = 40
    dropout: float = 0.1


def _build_bart(cfg: BARCORConfig):
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    if cfg.backbone != SCRATCH:
        tok = AutoTokenizer.from_pretrained(cfg.backbone, local_files_only=local_only(cfg.backbone))
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return BartForConditionalGeneration.from_pretrained(
            cfg.backbone, local_files_only=local_only(cfg.backbone)
        ), tok
    path = resolve_causal_lm(cfg.tokenizer)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=local_only(path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    bc = BartConfig(
        vocab_size=len(tok),
        d_model=cfg.d_model,
        encoder_layers=cfg.layers,
        decoder_layers=cfg.layers,
        encoder_attention_heads=cfg.heads,
        decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn,
        decoder_ffn_dim=cfg.ffn,
        max_position_embeddings=256,
        dropout=cfg.dropout,
        pad_token_id=tok.pad_token_id,
        bos_token_id=bos,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=bos,
        forced_eos_token_id=None,
    )
    return BartForConditionalGeneration(bc), tok


class BARCOR(PLMBase):
    """BARCOR (see module docstring). ``BARCOR(cfg, kg, items)``."""

    kind = "barcor"
    tasks = ("rec", "conv")

    def __init__(self, cfg: BARCORConfig, kg: KG, items):
        super().__init__(cfg, kg, items)
        self.bart, tok = _build_bart(cfg)
        tok.padding_side = "right"  # the conv loss places EOS right after each response
        self.frozen.tok = tok  # a tokenizer is not a module; kept beside the backbones
        d = self.bart.config.d_model
        self.entity = nn.Embedding(kg.num_entities, d)
        nn.init.normal_(self.entity.weight, std=d**-0.5)
        self.rec_proj = nn.Linear(d, d)
        # the light graph: each item's neighbours (any relation), as a sparse row-normalised matrix
        e = torch.as_tensor(kg.edges)
        item_pos = {int(ent): k for k, ent in enumerate(self.item_entities.tolist())}
        rows, cols = [], []
        for h, _, t in e.tolist():
            if h in item_pos:
                rows.append(item_pos[h])
                cols.append(t)
        idx = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
        deg = torch.bincount(idx[0], minlength=len(self.item_ids)).clamp(min=1).float()
        adj = torch.sparse_coo_tensor(
            idx, 1.0 / deg[idx[0]], (len(self.item_ids), kg.num_entities), check_invariants=True
        ).coalesce()
        self.register_buffer("item_adj", adj, persistent=False)

    def _item_vectors(self) -> torch.Tensor:
        w = self.entity.weight
        return w[self.item_entities] + torch.sparse.mm(self.item_adj, w)

    def _encode(self, histories: Sequence[Sequence[Turn]]):
        tok = self.frozen.tok
        tok.truncation_side = "left"
        texts = [format_context(h, self.cfg.max_context_turns) for h in histories]
        b = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.cfg.max_context_tokens)
        enc = self.bart.get_encoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        return enc, b["attention_mask"]

    def _query(self, enc, mask) -> torch.Tensor:
        m = mask[..., None].to(enc.last_hidden_state.dtype)
        pooled = (enc.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1)
        return self.rec_proj(pooled)

    def loss(self, examples: Sequence[Example], task: str) -> torch.Tensor:
        """Mean loss of one batch for ``task`` (``rec`` | ``conv``)."""
        enc, mask = self._encode([e.context for e in examples])
        if task == "rec":
            logits = self._query(enc, mask) @ self._item_vectors().T
            pos = {iid: k for k, iid in enumerate(self.item_ids)}
            targets = [[pos[t] for t in e.targets if t in pos] for e in examples]
            rows = [i for i, t in enumerate(targets) for _ in t]
            if not rows:
                raise ValueError("BARCOR.loss(rec): no example in the batch names a catalogue movie")
            return F.cross_entropy(logits[rows], torch.tensor([x for t in targets for x in t]))
        if task == "conv":
            tok = self.frozen.tok
            tok.truncation_side = "right"
            lab = tok(
                [e.response for e in examples],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.cfg.max_response_tokens,
            )
            ids, am = lab["input_ids"], lab["attention_mask"]
            # append EOS after each response so the decoder learns where to stop
            eos = torch.full((len(examples), 1), tok.eos_token_id)
            ids = torch.cat([ids, eos], 1)
            lens = am.sum(1)
            ids[torch.arange(len(examples)), lens] = tok.eos_token_id
            am = torch.cat([am, torch.zeros_like(eos)], 1)
            am[torch.arange(len(examples)), lens] = 1
            labels = ids.masked_fill(am == 0, -100)
            return self.bart(encoder_outputs=enc, attention_mask=mask, labels=labels).loss
        raise ValueError(f"BARCOR.loss: unknown task {task!r} (rec | conv)")

    @torch.no_grad()
    def item_scores(self, histories: Sequence[Sequence[Turn]]) -> torch.Tensor:
        enc, mask = self._encode(histories)
        return self._query(enc, mask) @ self._item_vectors().T

    @torch.no_grad()
    def generate(
        self,
        histories: Sequence[Sequence[Turn]],
        max_new_tokens: int = 40,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """Reply templates (with ``<movie>`` slots), greedy or sampled with ``seed``."""
        tok = self.frozen.tok
        tok.truncation_side = "left"
        texts = [format_context(h, self.cfg.max_context_turns) for h in histories]
        b = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.cfg.max_context_tokens)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            out = self.bart.generate(
                **b,
                max_new_tokens=max_new_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                num_beams=1,
                no_repeat_ngram_size=4,
            )  # 4: two slots ("<movie>" = 3 tokens) stay legal
        return [tok.decode(o, skip_special_tokens=True).strip().split("\n")[0].strip() for o in out]


__all__ = ["BARCOR", "BARCORConfig", "SCRATCH"]
