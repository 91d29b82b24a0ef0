"""A fake model hub on 127.0.0.1, and tiny models in the hub's published layouts, made on the fly.

`FakeHub` serves folders with the two endpoints of the Hugging Face hub that
`dragoman_tools.pull` uses: the revision listing
(`/api/models/REPO/revision/REV?blobs=true`, every file of the tree with its
size and LFS sha256 or git blob id) and `/REPO/resolve/SHA/PATH`, which
honours `Range: bytes=N-` as the hub does (206), so interrupted downloads can
be resumed. Tests break it on purpose: `tamper`, `cut`, `ignore_ranges`.

The tiny models, random weights (their output is gibberish, but they load and
run in the real engines):

* `write_whisper`: a faster-whisper CTranslate2 directory as Systran publishes
  it (config.json, model.bin, tokenizer.json, vocabulary.txt,
  preprocessor_config.json): a 2+2-layer Whisper built with
  `ctranslate2.specs.WhisperSpec`, with the real tokenizer and vocabulary
  copied from the installed whisper-base (the tests' `models_dir`).
* `write_piper`: a Piper voice as rhasspy/piper-voices publishes it
  (`<family>/<locale>/<name>/<quality>/<key>.onnx` + `.onnx.json` +
  MODEL_CARD): an ONNX graph with Piper's signature (`input` int64 [1, N],
  `input_lengths` int64 [1], `scales` float [3]; audio float [1, 1, 256 N])
  built with the `onnx` package, and a config whose phoneme map is Piper's
  own espeak map.

The translation models (Marian npz, converted CTranslate2) are in
tests/mt_svc/tiny.py.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np

# --------------------------------------------------------------------------- the hub


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Serves `repos` ({"owner/name": folder}) like huggingface.co at `url`.

    Every repository has one commit, `SHA`; "main" resolves to it. Files over
    `LFS_BYTES` are listed with an LFS sha256 (as the hub does for weights),
    the others with their git blob id; files in sub-folders are listed by
    their path. `tamper` maps a file name to bytes served instead of the real
    content (a corrupt download); `cut` maps a file name to the number of
    bytes after which the connection drops (in each answer); with
    `ignore_ranges` Range headers are ignored (a plain 200, as some mirrors
    do). `requests` and `ranges` record what was asked.
    """

    SHA = "0123456789abcdef0123456789abcdef01234567"
    LFS_BYTES = 10_000

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos
        self.tamper: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ignore_ranges = False
        self.requests: list[str] = []
        self.ranges: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                hub.requests.append(self.path)
                status, body, kind = hub.answer(urllib.parse.urlsplit(self.path))
                wanted = self.headers.get("Range", "")
                start = 0
                if wanted and status == 200 and not hub.ignore_ranges:
                    hub.ranges.append(wanted)
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                body = body[start:]
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
                    base = name.rsplit("/", 1)[-1]
                    body = self.tamper.get(base, (folder / name).read_bytes())
                    return 200, body, "application/octet-stream"
        return 404, b"Entry not found", "text/plain"

    def listing(self, repo: str) -> dict[str, object]:
        siblings = []
        folder = self.repos[repo]
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            entry: dict[str, object] = {
                "rfilename": path.relative_to(folder).as_posix(), "size": len(data),
                "blobId": git_blob_sha1(data),
            }
            if len(data) > self.LFS_BYTES:  # listed by its LFS pointer, as the hub does
                sha256 = hashlib.sha256(data).hexdigest()
                pointer = (f"version https://git-lfs.github.com/spec/v1\n"
                           f"oid sha256:{sha256}\nsize {len(data)}\n")
                entry["blobId"] = git_blob_sha1(pointer.encode())
                entry["lfs"] = {"sha256": sha256, "size": len(data), "pointerSize": len(pointer)}
            siblings.append(entry)
        return {"id": repo, "sha": self.SHA, "siblings": siblings}

    def files(self, repo: str) -> Iterator[Path]:
        return (p for p in self.repos[repo].rglob("*") if p.is_file())


# --------------------------------------------------------------------------- Whisper

WHISPER_D, WHISPER_FFN, WHISPER_LAYERS, WHISPER_HEADS, WHISPER_MELS = 64, 128, 2, 4, 80


def write_whisper(
    folder: Path, whisper_base: Path, seed: int = 0, *, d_model: int = WHISPER_D, ffn: int = WHISPER_FFN,
    layers: int = WHISPER_LAYERS, heads: int = WHISPER_HEADS,
) -> None:
    """A tiny random multilingual Whisper in the layout of Systran/faster-whisper-*.

    The tokenizer, vocabulary and special-token config (suppressed ids,
    language ids) are whisper-base's, so faster-whisper's prompts and
    language detection work; the weights are random and small (d_model 64;
    bench.stt_sizes builds the published sizes' shapes to time them).
    """
    import ctranslate2
    from ctranslate2.specs import common_spec, transformer_spec, whisper_spec

    folder.mkdir(parents=True, exist_ok=True)
    vocab = (whisper_base / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    vocab = vocab[:-1] if vocab[-1] == "" else vocab
    base_config = json.loads((whisper_base / "config.json").read_text())
    rng = np.random.default_rng(seed)
    d = d_model

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.1, shape).astype(np.float32)

    def linear(spec: common_spec.LinearSpec, out: int, inp: int, bias: bool = True) -> None:
        spec.weight = w(out, inp)
        if bias:
            spec.bias = np.zeros(out, np.float32)

    def norm(spec: common_spec.LayerNormSpec) -> None:
        spec.gamma, spec.beta = np.ones(d, np.float32), np.zeros(d, np.float32)

    def self_attention_and_ffn(layer: transformer_spec.TransformerEncoderLayerSpec) -> None:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)
        linear(layer.self_attention.linear[1], d, d)
        norm(layer.ffn.layer_norm)
        linear(layer.ffn.linear_0, ffn, d)
        linear(layer.ffn.linear_1, d, ffn)

    spec = whisper_spec.WhisperSpec(layers, heads, layers, heads)
    enc, dec = spec.encoder, spec.decoder
    enc.conv1.weight, enc.conv1.bias = w(d, WHISPER_MELS, 3), np.zeros(d, np.float32)
    enc.conv2.weight, enc.conv2.bias = w(d, d, 3), np.zeros(d, np.float32)
    enc.position_encodings.encodings = w(1500, d)
    norm(enc.layer_norm)
    for layer in enc.layer:
        self_attention_and_ffn(layer)
    dec.embeddings.weight = w(len(vocab), d)
    dec.position_encodings.encodings = w(448, d)
    norm(dec.layer_norm)
    linear(dec.projection, len(vocab), d, bias=False)
    for layer in dec.layer:
        self_attention_and_ffn(layer)
        norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], d, d)
        linear(layer.attention.linear[1], 2 * d, d)
        linear(layer.attention.linear[2], d, d)
    spec.register_vocabulary(vocab)
    spec.config.suppress_ids = base_config["suppress_ids"]
    spec.config.suppress_ids_begin = base_config["suppress_ids_begin"]
    spec.config.lang_ids = base_config["lang_ids"]
    spec.config.alignment_heads = [[layers - 1, h] for h in range(heads)]

    class SpecConverter(ctranslate2.converters.Converter):
        def _load(self) -> whisper_spec.WhisperSpec:
            return spec

    SpecConverter().convert(str(folder), quantization="int8", force=True)
    # As published: the vocabulary as a text file, the tokenizer, the feature extractor.
    for path in folder.glob("vocabulary.*"):
        path.unlink()
    shutil.copyfile(whisper_base / "vocabulary.txt", folder / "vocabulary.txt")
    shutil.copyfile(whisper_base / "tokenizer.json", folder / "tokenizer.json")
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": WHISPER_MELS, "hop_length": 160, "n_fft": 400, "n_samples": 480000,
        "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0,
        "return_attention_mask": False, "sampling_rate": 16000,
    }, indent=2))
    (folder / "README.md").write_text("A tiny random Whisper for tests.\n")


# --------------------------------------------------------------------------- Piper

PIPER_RATE_HZ = 16_000
PIPER_SAMPLES_PER_ID = 256


def piper_folder(key: str) -> str:
    """`de/de_DE/thorsten/medium` for `de_DE-thorsten-medium`, as rhasspy/piper-voices lays it out."""
    locale, speaker, quality = key.split("-")
    return f"{locale.split('_')[0]}/{locale}/{speaker}/{quality}"


def write_piper(root: Path, key: str, espeak_voice: str, licence: str = "CC0") -> Path:
    """A tiny Piper voice `key` under `root` in the hub's layout; returns its folder.

    The graph turns every phoneme id into 256 samples of a sine whose phase
    depends on the id, times noise_scale: deterministic, never silent.
    """
    import onnx
    from onnx import TensorProto, helper
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    folder = root / piper_folder(key)
    folder.mkdir(parents=True, exist_ok=True)
    const = helper.make_tensor
    nodes = [
        helper.make_node("Cast", ["input"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids", "step"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["wave"]),
        helper.make_node("Gather", ["scales", "zero"], ["noise_scale"], axis=0),
        helper.make_node("Mul", ["wave", "noise_scale"], ["scaled"]),
        helper.make_node("Cast", ["input_lengths"], ["length"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["length", "nothing"], ["no_offset"]),
        helper.make_node("Add", ["scaled", "no_offset"], ["per_id"]),
        helper.make_node("Unsqueeze", ["per_id", "last"], ["column"]),
        helper.make_node("Tile", ["column", "repeats"], ["tiled"]),
        helper.make_node("Reshape", ["tiled", "audio_shape"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny-piper",
        inputs=[
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        outputs=[helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "samples"])],
        initializer=[
            const("step", TensorProto.FLOAT, [], [0.37]),
            const("zero", TensorProto.INT64, [], [0]),
            const("nothing", TensorProto.FLOAT, [], [0.0]),
            const("last", TensorProto.INT64, [1], [2]),
            const("repeats", TensorProto.INT64, [3], [1, 1, PIPER_SAMPLES_PER_ID]),
            const("audio_shape", TensorProto.INT64, [3], [1, 1, -1]),
            # Unused weights, so that the file is big enough to be listed with an LFS sha256.
            const("weights", TensorProto.FLOAT, [4096], [0.0] * 4096),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the installed onnxruntime reads
    onnx.checker.check_model(model)
    (folder / f"{key}.onnx").write_bytes(model.SerializeToString())
    locale = key.split("-")[0]
    family, region = locale.split("_")
    (folder / f"{key}.onnx.json").write_text(json.dumps({
        "audio": {"sample_rate": PIPER_RATE_HZ, "quality": key.rsplit("-", 1)[-1]},
        "espeak": {"voice": espeak_voice},
        "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8},
        "phoneme_type": "espeak", "phoneme_map": {},
        "phoneme_id_map": DEFAULT_PHONEME_ID_MAP,
        "num_symbols": 256, "num_speakers": 1, "speaker_id_map": {}, "piper_version": "1.0.0",
        "language": {"code": locale, "family": family, "region": region},
        "dataset": key.split("-")[1],
    }, ensure_ascii=False, indent=2))
    (folder / "MODEL_CARD").write_text(
        f"# Model card for {key.split('-')[1]} ({key.rsplit('-', 1)[-1]})\n\n"
        f"* Language: {locale}\n\n## Dataset\n\n* License: {licence}\n"
    )
    return folder
