"""UniCRS (Wang et al., KDD 2022): knowledge-enhanced prompt learning over a frozen PLM.

What is kept from the paper:

* a **frozen** generator PLM (DialoGPT-small there; SmolLM2-135M-Instruct, the kit's packaged
  model, at CPU scale; any causal-LM directory or hub id by ``cfg.generator``);
* a frozen **text encoder** (RoBERTa there; all-MiniLM-L6-v2 here) for the dialogue context;
* an **R-GCN** (Schlichtkrull et al. 2018, basis decomposition, written in plain torch) over the
  knowledge graph, giving entity embeddings;
* **semantic fusion**: a bilinear affinity between context tokens and context entities
  (``A = T W E^T``) lets each side attend to the other (``T~ = T + softmax(A) E``,
  ``E~ = E + softmax(A^T) T``), and an MLP maps the fused vectors into the PLM's embedding
  space as soft prompt tokens, followed by learned **task-specific** prompt tokens;
* **stages**: prompt pre-training (predict the entities of the response from the context),
  recommendation (the PLM's last hidden state, projected, scored against the R-GCN item
  embeddings; cross-entropy on the movie the recommender named), conversation (LM loss on the
  response template, in which movies are a ``<movie>`` slot that the top-ranked item fills).

Simplifications, stated: the soft prompts enter as input embeddings (prefix tokens), not as
per-layer key/values; the text encoder stays frozen; the conversation stage trains its own prompt
encoder (initialised, as in the paper, from the pre-trained one) with the R-GCN frozen.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rso_lib.baselines.common import PLMBase, _Frozen, local_only, resolve_causal_lm, resolve_text_encoder
from rso_lib.baselines.examples import SLOT, Example, context_entities, format_context
from rso_lib.baselines.kg import KG
from rso_lib.data.records import Turn

REC_CUE = "\nRecommended movie:"
REPLY_CUE = "\nSystem:"


class RGCN(nn.Module):
    """One relational graph-convolution layer over learned entity features (basis decomposition).

    ``h_i' = W_0 h_i + sum_r sum_{j in N_r(i)} (1 / |N_r(i)|) W_r h_j``,
    ``W_r = sum_b a_rb V_b``. Edges: ``int64 [E, 3]`` rows (head, relation, tail); messages go
    head -> tail (the graph holds inverse relations for the other direction).

    Args:
        num_entities / num_relations: graph sizes.
        dim: embedding size (default 64).
        num_bases: basis matrices (default 8).
        edges: the graph's edge list.
    """

    def __init__(self, num_entities: int, num_relations: int, edges, dim: int = 64, num_bases: int = 8):
        super().__init__()
        self.emb = nn.Embedding(num_entities, dim)
        nn.init.normal_(self.emb.weight, std=dim**-0.5)
        self.bases = nn.Parameter(torch.randn(num_bases, dim, dim) * dim**-0.5)
        self.coef = nn.Parameter(torch.randn(num_relations, num_bases) / num_bases**0.5)
        self.root = nn.Linear(dim, dim)
        e = torch.as_tensor(edges, dtype=torch.long).reshape(-1, 3)
        src, rel, dst = e[:, 0], e[:, 1], e[:, 2]
        # 1 / |N_r(i)| per edge: in-degree of the tail within its relation
        key = dst * num_relations + rel
        deg = torch.bincount(key, minlength=num_entities * num_relations).float()
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", dst, persistent=False)
        self.register_buffer("rel", rel, persistent=False)
        self.register_buffer("norm", 1.0 / deg[key], persistent=False)
        self.num_entities, self.num_relations = num_entities, num_relations

    def forward(self) -> torch.Tensor:
        h = self.emb.weight
        out = self.root(h)
        w = torch.einsum("rb,bde->rde", self.coef, self.bases)  # [R, D, D]
        for r in range(self.num_relations):
            m = self.rel == r
            if not bool(m.any()):
                continue
            agg = torch.zeros_like(h).index_add_(0, self.dst[m], h[self.src[m]] * self.norm[m, None])
            out = out + agg @ w[r]
        return F.relu(out) + h  # residual keeps isolated entities (catalogue movies the KG lacks) distinct


class Fusion(nn.Module):
    """Semantic fusion of context tokens ``T [B, L, d_enc]`` and entities ``E [B, n, d_kg]`` into
    soft prompts ``[B, n + 1 + L + task_prompts, d_gen]`` (+ mask): a bilinear affinity lets each
    side attend to the other, an MLP maps the fused vectors into the PLM's embedding space, and
    learned task tokens follow. A learned null entity is always present, so fusion is defined for
    contexts that name no entity."""

    def __init__(self, d_enc: int, d_kg: int, d: int, d_gen: int, task_prompts: int, dropout: float):
        super().__init__()
        self.null_entity = nn.Parameter(torch.zeros(d_kg))
        self.text_proj, self.ent_proj = nn.Linear(d_enc, d), nn.Linear(d_kg, d)
        self.affinity = nn.Parameter(torch.eye(d) + 0.01 * torch.randn(d, d))
        self.prompt_mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.Tanh(), nn.Linear(2 * d, d_gen))
        self.task_prompt = nn.Parameter(torch.randn(task_prompts, d_gen) * 0.02)
        self.drop = nn.Dropout(dropout)

    def forward(self, T, tmask, E, emask):
        B = T.shape[0]
        E = torch.cat([E, self.null_entity.expand(B, 1, -1)], dim=1)
        emask = torch.cat([emask, torch.ones(B, 1, dtype=torch.bool)], dim=1)
        Tp, Ep = self.text_proj(T), self.ent_proj(E)
        A = Tp @ self.affinity @ Ep.transpose(1, 2)  # [B, L, n + 1]
        neg = torch.finfo(A.dtype).min
        t2e = torch.softmax(A.masked_fill(~emask[:, None, :], neg), dim=-1)
        e2t = torch.softmax(A.transpose(1, 2).masked_fill(~tmask[:, None, :], neg), dim=-1)
        Tf, Ef = Tp + t2e @ Ep, Ep + e2t @ Tp
        fused = self.prompt_mlp(self.drop(torch.cat([Ef, Tf], dim=1)))
        mask = torch.cat([emask, tmask], dim=1)
        tp = self.task_prompt[None].expand(B, -1, -1)
        return torch.cat([fused, tp], dim=1), torch.cat([mask, torch.ones(B, tp.shape[1], dtype=torch.bool)], dim=1)


@dataclass
class UniCRSConfig:
    """UniCRS hyper-parameters.

    Attributes:
        generator: frozen causal LM (``"embedded"`` = SmolLM2-135M-Instruct; paper profile
            ``"microsoft/DialoGPT-small"``).
        text_encoder: frozen context encoder (``"all-MiniLM-L6-v2"``; paper profile
            ``"roberta-base"``).
        kg_source: ``"redial"`` (the ReDial KG files) or ``"inspired"`` (built from KB facts).
        kg_dim / num_bases: R-GCN size (default 64 / 8).
        fusion_dim: fusion width (default 128).
        task_prompts: learned prompt tokens per task (default 8).
        max_entities: context entities fused (default 16).
        max_context_turns / max_context_tokens / max_encoder_tokens / max_response_tokens: input
            limits (defaults 6 / 96 / 48 / 40; the oldest text is cut).
        dropout: on the fused prompt (default 0.1).
        dtype: the frozen backbones' dtype (default ``"float32"``).
    """

    generator: str = "embedded"
    text_encoder: str = "all-MiniLM-L6-v2"
    kg_source: str = "redial"
    kg_dim: int = 64
    num_bases: int = 8
    fusion_dim: int = 128
    task_prompts: int = 8
    max_entities: int = 16
    max_context_turns: int = 6
    max_context_tokens: int = 96
    max_encoder_tokens: int = 48
    max_response_tokens: int = 40
    dropout: float = 0.1
    dtype: str = "float32"


@functools.lru_cache(maxsize=4)
def _load_frozen_lm(name: str, dtype: str):
    """The frozen generator + tokenizer, loaded once per process (frozen: safe to share)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_causal_lm(name)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=local_only(path))
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_only(path), dtype=getattr(torch, dtype))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), tok


@functools.lru_cache(maxsize=4)
def _load_frozen_encoder(name: str, dtype: str):
    from transformers import AutoModel, AutoTokenizer

    path = resolve_text_encoder(name)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=local_only(path))
    model = AutoModel.from_pretrained(path, local_files_only=local_only(path), dtype=getattr(torch, dtype))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), tok


class UniCRS(PLMBase):
    """UniCRS (see module docstring). ``UniCRS(cfg, kg, items)``; train with
    :func:`rso_lib.baselines.train.train_plm`."""

    kind = "unicrs"
    tasks = ("pretrain", "rec", "conv")

    def __init__(self, cfg: UniCRSConfig, kg: KG, items):
        super().__init__(cfg, kg, items)
        gen, gtok = _load_frozen_lm(cfg.generator, cfg.dtype)
        enc, etok = _load_frozen_encoder(cfg.text_encoder, cfg.dtype)
        self.frozen = _Frozen(gen=gen, gtok=gtok, enc=enc, etok=etok)
        d_gen, d_enc = gen.get_input_embeddings().weight.shape[1], enc.config.hidden_size
        self.rgcn = RGCN(kg.num_entities, kg.num_relations, kg.edges, cfg.kg_dim, cfg.num_bases)
        # one prompt encoder per task, as in the paper (the conversation stage trains its own and
        # leaves the recommender -- fusion, R-GCN -- as the earlier stages made it)
        self.fusion = nn.ModuleDict(
            {
                t: Fusion(d_enc, cfg.kg_dim, cfg.fusion_dim, d_gen, cfg.task_prompts, cfg.dropout)
                for t in ("rec", "conv")
            }
        )
        self.rec_proj = nn.Linear(d_gen, cfg.kg_dim)

    def on_stage_start(self, task: str) -> None:
        """Before the recommendation stage: the conversation prompt encoder starts from the
        pre-trained one (the paper's initialisation)."""
        if task == "rec":
            self.fusion["conv"].load_state_dict(self.fusion["rec"].state_dict())

    # -- prompt ------------------------------------------------------------------------------------
    def _encode_text(self, texts: list[str]):
        etok, enc = self.frozen.etok, self.frozen.enc
        etok.truncation_side = "left"  # keep the most recent words
        b = etok(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.cfg.max_encoder_tokens)
        with torch.no_grad():
            h = enc(**b).last_hidden_state.float()
        return h, b["attention_mask"].bool()

    def _prompts(self, histories: Sequence[Sequence[Turn]], ents: list[list[int]], task: str, entity_emb):
        """Soft prompt ``[B, P, d_gen]`` and its mask: fused entities, fused tokens, task tokens."""
        texts = [format_context(h, self.cfg.max_context_turns) for h in histories]
        T, tmask = self._encode_text(texts)  # [B, L, d_enc]
        B = len(texts)
        n = max(len(e) for e in ents) + 1
        E = entity_emb.new_zeros(B, n, self.cfg.kg_dim)
        emask = torch.zeros(B, n, dtype=torch.bool)
        for i, e in enumerate(ents):
            if e:
                E[i, : len(e)] = entity_emb[torch.tensor(e)]
            emask[i, : len(e)] = True
        return self.fusion[task](T, tmask, E, emask)

    def _inputs(self, histories, ents, task, entity_emb, tails: list[list[int]], cue: str):
        """Left-padded ``inputs_embeds`` = [prompt; context tokens; cue; tail tokens], mask, and
        the positions of each row's tail tokens (for the LM loss)."""
        gtok, gen = self.frozen.gtok, self.frozen.gen
        prompt, pmask = self._prompts(histories, ents, task, entity_emb)
        emb = gen.get_input_embeddings()
        cue_ids = gtok(cue, add_special_tokens=False)["input_ids"]
        rows, tail_pos = [], []
        for i, h in enumerate(histories):
            ctx = gtok(format_context(h, self.cfg.max_context_turns), add_special_tokens=False)["input_ids"]
            ids = ctx[-self.cfg.max_context_tokens :] + cue_ids + tails[i]
            p = prompt[i][pmask[i]]
            x = torch.cat([p, emb(torch.tensor(ids)).to(p.dtype)])
            rows.append(x)
            tail_pos.append((len(x) - len(tails[i]), len(x)))
        L = max(len(r) for r in rows)
        X = prompt.new_zeros(len(rows), L, prompt.shape[-1])
        M = torch.zeros(len(rows), L, dtype=torch.long)
        spans = []
        for i, r in enumerate(rows):
            X[i, L - len(r) :] = r
            M[i, L - len(r) :] = 1
            spans.append((tail_pos[i][0] + L - len(r), tail_pos[i][1] + L - len(r)))
        return X, M, spans

    def _forward_lm(self, X, M) -> torch.Tensor:
        """Last hidden states ``[B, L, d_gen]`` of the frozen PLM's body (no LM head: callers
        apply it only where they need logits)."""
        gen = self.frozen.gen
        pos = (M.cumsum(-1) - 1).clamp(min=0)
        return gen.base_model(inputs_embeds=X.to(gen.dtype), attention_mask=M, position_ids=pos).last_hidden_state

    # -- tasks -----------------------------------------------------------------------------------
    def _ents(self, histories) -> list[list[int]]:
        return [context_entities(h, self.linker, self.cfg.max_context_turns, self.cfg.max_entities) for h in histories]

    def _rec_query(self, histories, ents, task, entity_emb):
        X, M, _ = self._inputs(histories, ents, task, entity_emb, [[] for _ in histories], REC_CUE)
        return self.rec_proj(self._forward_lm(X, M)[:, -1].float())  # [B, kg_dim]

    def loss(self, examples: Sequence[Example], task: str) -> torch.Tensor:
        """Mean loss of one batch for ``task`` (``pretrain`` | ``rec`` | ``conv``)."""
        hs = [e.context for e in examples]
        ents = [e.context_entities[-self.cfg.max_entities :] for e in examples]
        if task == "conv":
            with torch.no_grad():
                entity_emb = self.rgcn()
        else:
            entity_emb = self.rgcn()
        if task in ("pretrain", "rec"):
            q = self._rec_query(hs, ents, "rec", entity_emb)
            if task == "pretrain":  # predict every entity the response names, over all entities
                logits, targets = q @ entity_emb.T, [e.response_entities for e in examples]
            else:
                logits = q @ entity_emb[self.item_entities].T
                pos = {iid: k for k, iid in enumerate(self.item_ids)}
                targets = [[pos[t] for t in e.targets if t in pos] for e in examples]
            rows = [i for i, t in enumerate(targets) for _ in t]
            if not rows:
                raise ValueError(f"UniCRS.loss({task}): no example in the batch has a target")
            return F.cross_entropy(logits[rows], torch.tensor([x for t in targets for x in t]))
        if task == "conv":
            gtok = self.frozen.gtok
            tails = [
                gtok(" " + e.response, add_special_tokens=False)["input_ids"][: self.cfg.max_response_tokens]
                + [gtok.eos_token_id]
                for e in examples
            ]
            X, M, spans = self._inputs(hs, ents, "conv", entity_emb.detach(), tails, REPLY_CUE)
            h = self._forward_lm(X, M)
            # position p predicts token p + 1: the tail's tokens are predicted from a - 1 .. b - 2
            hs_tail = torch.cat([h[i, a - 1 : b - 1] for i, (a, b) in enumerate(spans)])
            logits = self.frozen.gen.get_output_embeddings()(hs_tail).float()
            return F.cross_entropy(logits, torch.tensor([x for t in tails for x in t]))
        raise ValueError(f"UniCRS.loss: unknown task {task!r} (pretrain | rec | conv)")

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def item_scores(self, histories: Sequence[Sequence[Turn]]) -> torch.Tensor:
        entity_emb = self.rgcn()
        q = self._rec_query(histories, self._ents(histories), "rec", entity_emb)
        return q @ entity_emb[self.item_entities].T

    @torch.no_grad()
    def generate(
        self,
        histories: Sequence[Sequence[Turn]],
        max_new_tokens: int = 40,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """Reply templates (with ``<movie>`` slots), greedy or sampled with ``seed``."""
        gen, gtok = self.frozen.gen, self.frozen.gtok
        X, M, _ = self._inputs(
            histories, self._ents(histories), "conv", self.rgcn(), [[] for _ in histories], REPLY_CUE
        )
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            out = gen.generate(
                inputs_embeds=X.to(gen.dtype),
                attention_mask=M,
                max_new_tokens=max_new_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                pad_token_id=gtok.pad_token_id,
                eos_token_id=gtok.eos_token_id,
            )
        return [_clean(gtok.decode(o, skip_special_tokens=True)) for o in out]


def _clean(text: str) -> str:
    """First line of a generated reply, without a leaked speaker tag."""
    text = text.strip().split("\nUser:")[0].split("\n")[0].strip()
    return text.removeprefix("System:").strip()


__all__ = ["RGCN", "UniCRS", "UniCRSConfig", "SLOT"]
