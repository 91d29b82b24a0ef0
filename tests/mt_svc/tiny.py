"""Tiny, randomly initialised translation models built offline, and a fake model hub.

Nothing here is downloaded: SentencePiece is trained on the fly on a few
hundred made-up lines, and the weights are random (the output is gibberish,
but deterministic). Two layouts:

* `write_marian` writes a model as OPUS-MT publishes it in Marian's own
  format (model.npz with the model.yml inside, decoder.yml, a vocab.yml,
  source.spm and target.spm): what `ctranslate2.converters.OpusMTConverter`
  converts, with no torch needed. `dragoman_tools.pull.pull` downloads it from
  `FakeHub` and converts it for real.
* `write_ct2` writes an already converted CTranslate2 model with extra
  language tokens (e.g. "__pt__" or "por_Latn"), for the M2M-100 and
  NLLB prompt conventions.

`FakeHub` serves folders over HTTP on 127.0.0.1 with the two endpoints of
the Hugging Face hub that the pull code uses: the revision listing
(`/api/models/REPO/revision/REV?blobs=true`) and `/REPO/resolve/SHA/FILE`.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import random
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

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


# --------------------------------------------------------------------------- fake hub


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Serves `repos` ({"owner/name": folder}) like huggingface.co at `url`.

    Every repository has one commit, `SHA`; "main" resolves to it. Files over
    `LFS_BYTES` are listed with an LFS sha256 (as the hub does for weights),
    the others with their git blob id. `tamper` maps a file name to bytes
    served instead of the real content (a corrupt download); `cut` maps a file
    name to the number of bytes after which the connection drops.
    """

    SHA = "0123456789abcdef0123456789abcdef01234567"
    LFS_BYTES = 10_000

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos
        self.tamper: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                hub.requests.append(self.path)
                status, body, kind = hub.answer(urllib.parse.urlsplit(self.path))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = next((n for name, n in hub.cut.items() if self.path.endswith(f"/{name}")), None)
                self.wfile.write(body if cut is None else body[:cut])
                self.close_connection = cut is not None

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(self, url: urllib.parse.SplitResult) -> tuple[int, bytes, str]:
        path = url.path
        if path.startswith("/api/models/"):
            repo, _, revision = path.removeprefix("/api/models/").partition("/revision/")
            if repo not in self.repos or revision not in ("main", self.SHA):
                return 404, b'{"error": "Repository not found"}', "application/json"
            return 200, json.dumps(self.listing(repo)).encode(), "application/json"
        for repo, folder in self.repos.items():
            prefix = f"/{repo}/resolve/{self.SHA}/"
            if path.startswith(prefix):
                name = urllib.parse.unquote(path.removeprefix(prefix))
                if (folder / name).is_file():
                    body = self.tamper.get(name, (folder / name).read_bytes())
                    return 200, body, "application/octet-stream"
        return 404, b"Entry not found", "text/plain"

    def listing(self, repo: str) -> dict[str, object]:
        siblings = []
        for path in sorted(self._files(repo)):
            data = path.read_bytes()
            entry: dict[str, object] = {
                "rfilename": path.name, "size": len(data), "blobId": _git_blob_sha1(data),
            }
            if len(data) > self.LFS_BYTES:  # listed by its LFS pointer, as the hub does
                sha256 = hashlib.sha256(data).hexdigest()
                pointer = (f"version https://git-lfs.github.com/spec/v1\n"
                           f"oid sha256:{sha256}\nsize {len(data)}\n")
                entry["blobId"] = _git_blob_sha1(pointer.encode())
                entry["lfs"] = {"sha256": sha256, "size": len(data), "pointerSize": len(pointer)}
            siblings.append(entry)
        return {"id": repo, "sha": self.SHA, "siblings": siblings}

    def _files(self, repo: str) -> Iterator[Path]:
        return (p for p in self.repos[repo].iterdir() if p.is_file())
