"""Tiny, randomly initialised translation models built offline.

Nothing here is downloaded: SentencePiece is trained on the fly on a few
hundred made-up lines, and the weights are random (the output is gibberish,
but deterministic). Two layouts:

* `write_marian` writes a model as OPUS-MT publishes it in Marian's own
  format (model.npz with the model.yml inside, decoder.yml, a vocab.yml,
  source.spm and target.spm): what `ctranslate2.converters.OpusMTConverter`
  converts, with no torch needed. `dragoman_tools.pull.pull` downloads it from
  `tests.fakehub.FakeHub` and converts it for real.
* `write_ct2` writes an already converted CTranslate2 model with extra
  language tokens (e.g. "__pt__" or "por_Latn"), for the M2M-100 and
  NLLB prompt conventions.

The fake hub that serves them, and the tiny speech models and voices, are in
tests/fakehub.py.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
import yaml

WORDS = (
    "the a cat dog house car red blue big small runs sees eats near far with under over good bad "
    "day night water fire tree stone bird fish walks talks"
).split()
D_MODEL, FFN, LAYERS, HEADS = 32, 64, 2, 4
NPZ = "opus.spm64-spm64.transformer.model1.npz.best-perplexity.npz"
VOCAB = "opus.spm64-spm64.vocab.yml"


def train_sentencepiece(vocab_size: int = 50, seed: int = 0) -> bytes:
    """A unigram SentencePiece model (the .spm file bytes) of `WORDS` sentences."""
    rnd = random.Random(seed)
    lines = [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 10))) for _ in range(300)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, minloglevel=2,
    )
    return buf.getvalue()


def _pieces(model: bytes) -> list[str]:
    sp = spm.SentencePieceProcessor(model_proto=model)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def write_marian(folder: Path, extra_tokens: Sequence[str] = (), seed: int = 0) -> None:
    """A post-norm Marian transformer with a shared vocabulary, as OPUS-MT releases it."""
    folder.mkdir(parents=True, exist_ok=True)
    model = train_sentencepiece(seed=seed)
    (folder / "source.spm").write_bytes(model)
    (folder / "target.spm").write_bytes(model)
    pieces = [p for p in _pieces(model) if p not in ("<unk>", "<s>", "</s>")]
    vocab = ["</s>", "<unk>", *pieces, *extra_tokens]  # Marian: </s> = 0, <unk> = 1
    (folder / VOCAB).write_text(
        "".join(f"{json.dumps(token, ensure_ascii=False)}: {i}\n" for i, token in enumerate(vocab))
    )
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.1, shape).astype(np.float32)

    weights: dict[str, np.ndarray] = {"Wemb": w(len(vocab), D_MODEL)}

    def attention(scope: str) -> None:
        for m in "qkvo":
            weights[f"{scope}_W{m}"] = w(D_MODEL, D_MODEL)
            weights[f"{scope}_b{m}"] = np.zeros((1, D_MODEL), np.float32)
        weights[f"{scope}_Wo_ln_scale"] = np.ones((1, D_MODEL), np.float32)
        weights[f"{scope}_Wo_ln_bias"] = np.zeros((1, D_MODEL), np.float32)

    def ffn(scope: str) -> None:
        weights[f"{scope}_W1"], weights[f"{scope}_b1"] = w(D_MODEL, FFN), np.zeros((1, FFN), np.float32)
        weights[f"{scope}_W2"], weights[f"{scope}_b2"] = w(FFN, D_MODEL), np.zeros((1, D_MODEL), np.float32)
        weights[f"{scope}_ffn_ln_scale"] = np.ones((1, D_MODEL), np.float32)
        weights[f"{scope}_ffn_ln_bias"] = np.zeros((1, D_MODEL), np.float32)

    for i in range(1, LAYERS + 1):
        attention(f"encoder_l{i}_self")
        ffn(f"encoder_l{i}_ffn")
        attention(f"decoder_l{i}_self")
        attention(f"decoder_l{i}_context")
        ffn(f"decoder_l{i}_ffn")
    weights["decoder_ff_logit_out_b"] = np.zeros((1, len(vocab)), np.float32)
    config = {
        "type": "transformer", "enc-depth": LAYERS, "dec-depth": LAYERS, "transformer-heads": HEADS,
        "transformer-ffn-activation": "relu", "transformer-preprocess": "",
        "transformer-postprocess": "dan", "transformer-postprocess-emb": "d",
        "transformer-decoder-autoreg": "self-attention", "transformer-no-projection": False,
        "transformer-guided-alignment-layer": "last", "tied-embeddings-all": True,
    }
    text = yaml.safe_dump(config).encode() + b"\0"
    weights["special:model.yml"] = np.frombuffer(text, dtype=np.int8)
    with (folder / NPZ).open("wb") as fh:
        np.savez(fh, **weights)  # a file handle: no ".npz" appended, deterministic zip dates
    (folder / "decoder.yml").write_text(yaml.safe_dump({
        "models": [NPZ], "vocabs": [VOCAB, VOCAB], "beam-size": 4, "normalize": 1,
    }))
    (folder / "README.md").write_text("A tiny random OPUS-MT-style model for tests.\n")


def write_ct2(folder: Path, extra_tokens: Sequence[str], seed: int = 0) -> None:
    """A converted CTranslate2 model (pre-norm, shared vocabulary) plus its
    `sentencepiece.bpe.model`, laid out like a converted M2M-100 or NLLB."""
    import ctranslate2
    from ctranslate2.specs import common_spec, transformer_spec

    model = train_sentencepiece(seed=seed)
    vocab = [*_pieces(model), *extra_tokens]
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.1, shape).astype(np.float32)

    def linear(spec: common_spec.LinearSpec, out: int, inp: int) -> None:
        spec.weight, spec.bias = w(out, inp), np.zeros(out, np.float32)

    def norm(spec: common_spec.LayerNormSpec) -> None:
        spec.gamma, spec.beta = np.ones(D_MODEL, np.float32), np.zeros(D_MODEL, np.float32)

    spec = transformer_spec.TransformerSpec.from_config(LAYERS, HEADS)
    enc, dec = spec.encoder, spec.decoder
    enc.embeddings[0].weight, dec.embeddings.weight = w(len(vocab), D_MODEL), w(len(vocab), D_MODEL)
    enc.scale_embeddings = dec.scale_embeddings = True
    norm(enc.layer_norm)
    norm(dec.layer_norm)
    linear(dec.projection, len(vocab), D_MODEL)
    for layer in [*enc.layer, *dec.layer]:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * D_MODEL, D_MODEL)
        linear(layer.self_attention.linear[1], D_MODEL, D_MODEL)
        norm(layer.ffn.layer_norm)
        linear(layer.ffn.linear_0, FFN, D_MODEL)
        linear(layer.ffn.linear_1, D_MODEL, FFN)
    for layer in dec.layer:
        norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], D_MODEL, D_MODEL)
        linear(layer.attention.linear[1], 2 * D_MODEL, D_MODEL)
        linear(layer.attention.linear[2], D_MODEL, D_MODEL)
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)

    class SpecConverter(ctranslate2.converters.Converter):
        def _load(self) -> transformer_spec.TransformerSpec:
            return spec

    SpecConverter().convert(str(folder), quantization="int8", force=True)
    (folder / "sentencepiece.bpe.model").write_bytes(model)
