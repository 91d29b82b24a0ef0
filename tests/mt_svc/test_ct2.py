"""The CTranslate2 engine: each family's language tokens and its confidence, on tiny random
models built offline (no CTranslate2 translation weights install on the CI machines)."""

from __future__ import annotations

import math
from pathlib import Path

import ctranslate2
import pytest
import sentencepiece as spm

from dragoman import config, rpc
from dragoman.catalog.pulled import HubModel
from dragoman.errors import FailedPrecondition
from mt_svc import server
from mt_svc.cache import MemoryCache
from mt_svc.engines.base import TranslationBatch
from mt_svc.engines.ct2 import FLORES200, Ct2Engine, DecodeOptions, Prompt, prompt
from mt_svc.engines.fake import FakeEngine
from mt_svc.text import chunks
from tests.conftest import started
from tests.mt_svc.conftest import request, stub_of, with_mt
from tests.mt_svc.tiny import write_ct2

OPTIONS = DecodeOptions(beam_size=2, max_output_tokens=12, cpu_threads=1)


def _model(family: str, **kwargs: object) -> HubModel:
    return HubModel(
        name=f"tiny-{family}", repo=f"t/{family}", family=family,  # type: ignore[arg-type]
        pairs=frozenset({("en", "pt"), ("pt", "en")}), licence="MIT", size=1, description="",
        tokenizer=("sentencepiece.bpe.model",), **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("family", "kwargs", "expected"),
    [
        ("marian", {}, Prompt(["the", "cat", "</s>"], None)),
        ("marian", {"target_tokens": {"pt": ">>por<<"}}, Prompt([">>por<<", "the", "cat", "</s>"], None)),
        ("m2m100", {}, Prompt(["__en__", "the", "cat", "</s>"], ["__pt__"])),
        ("nllb", {}, Prompt(["eng_Latn", "the", "cat", "</s>"], ["por_Latn"])),
        ("madlad", {}, Prompt(["<2pt>", "the", "cat", "</s>"], None)),
    ],
)
def test_prompts_follow_each_family(family: str, kwargs: dict[str, object], expected: Prompt) -> None:
    assert prompt(_model(family, **kwargs), "the cat", str.split, "en", "pt", add_eos=True) == expected


def test_eos_is_left_to_models_that_add_it() -> None:
    assert prompt(_model("marian"), "the cat", str.split, "en", "pt", add_eos=False).source == [
        "the", "cat"]


def test_flores_codes_cover_every_product_language() -> None:
    from dragoman.languages import SUPPORTED

    assert set(FLORES200) == set(SUPPORTED)
    assert (FLORES200["pt"], FLORES200["zh"], FLORES200["ar"]) == ("por_Latn", "zho_Hans", "arb_Arab")


@pytest.mark.parametrize(("family", "tokens"), [
    ("nllb", ("eng_Latn", "por_Latn")), ("m2m100", ("__en__", "__pt__"))])
async def test_language_token_is_forced_then_dropped(
    tmp_path: Path, family: str, tokens: tuple[str, ...]
) -> None:
    write_ct2(tmp_path, tokens)
    engine = Ct2Engine(_model(family), tmp_path, OPTIONS)
    try:
        texts = ("the red cat sees a bird", "a big dog")
        out = await engine.translate(TranslationBatch("en", "pt", texts))
    finally:
        await engine.close()
    # The same as the model gives for the family's prompt, minus the forced token.
    translator = ctranslate2.Translator(str(tmp_path), device="cpu", compute_type="int8")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sentencepiece.bpe.model"))
    expected = []
    for text in texts:
        p = prompt(_model(family), text, lambda t: sp.encode(t, out_type=str), "en", "pt", add_eos=True)
        (result,) = translator.translate_batch([p.source], target_prefix=[p.target_prefix],
                                               beam_size=2, max_decoding_length=12)
        assert result.hypotheses[0][0] == tokens[1]
        expected.append(sp.decode(result.hypotheses[0][1:]))
    assert out == expected
    assert all(tokens[1] not in t for t in out)


LONG = "the red cat sees a bird. the big dog eats a fish near the tree with a bird. the cat walks."


def _splitting(folder: Path, max_output_tokens: int) -> tuple[Ct2Engine, tuple[str, ...]]:
    """An engine that splits texts into pieces of at most 8 tokens, and LONG's pieces."""
    write_ct2(folder, ("__en__", "__pt__"))
    options = DecodeOptions(beam_size=1, max_input_tokens=8, max_output_tokens=max_output_tokens,
                            cpu_threads=1)
    sp = spm.SentencePieceProcessor(model_file=str(folder / "sentencepiece.bpe.model"))
    pieces = tuple(p for p, _ in chunks(LONG, 8, lambda t: len(sp.encode(t))))
    assert len(pieces) > 2 and all(len(sp.encode(p)) <= 8 for p in pieces)
    return Ct2Engine(_model("m2m100"), folder, options), pieces


async def test_long_text_is_split_into_pieces_of_at_most_max_input_tokens(tmp_path: Path) -> None:
    engine, pieces = _splitting(tmp_path, max_output_tokens=4)
    try:
        (whole,) = await engine.translate(TranslationBatch("en", "pt", (LONG,)))
        each = await engine.translate(TranslationBatch("en", "pt", pieces))
    finally:
        await engine.close()
    assert whole == " ".join(each)


def test_a_model_that_does_not_load_is_a_failed_precondition(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a model")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FailedPrecondition, match="model tiny-nllb in .* does not load .*"
                                                 "run `dragoman models pull --force tiny-nllb`"):
        Ct2Engine(_model("nllb"), tmp_path)


async def test_confidence_is_the_mean_token_probability_the_model_gives(tmp_path: Path) -> None:
    write_ct2(tmp_path, ("__en__", "__pt__"))
    engine = Ct2Engine(_model("m2m100"), tmp_path, OPTIONS)
    texts = ("the red cat sees a bird", "a big dog")
    try:
        scored = await engine.translate_scored(TranslationBatch("en", "pt", texts))
        plain = await engine.translate(TranslationBatch("en", "pt", texts))
    finally:
        await engine.close()
    assert [s.text for s in scored] == plain
    translator = ctranslate2.Translator(str(tmp_path), device="cpu", compute_type="int8")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sentencepiece.bpe.model"))
    for text, s in zip(texts, scored, strict=True):
        p = prompt(_model("m2m100"), text, lambda t: sp.encode(t, out_type=str), "en", "pt", add_eos=True)
        (result,) = translator.translate_batch(
            [p.source], target_prefix=[p.target_prefix], beam_size=2, max_decoding_length=12,
            return_scores=True)
        # CTranslate2's score is the log-probability per output token (length_penalty 1)
        assert s.confidence == pytest.approx(math.exp(result.scores[0]), rel=1e-4)
        assert s.confidence is not None and 0 < s.confidence < 1


async def test_a_split_text_is_as_sure_as_its_pieces_weighted_by_length(tmp_path: Path) -> None:
    engine, pieces = _splitting(tmp_path, max_output_tokens=6)
    try:
        (whole,) = await engine.translate_scored(TranslationBatch("en", "pt", (LONG,)))
        each = await engine.translate_scored(TranslationBatch("en", "pt", pieces))
    finally:
        await engine.close()
    # every piece decodes to max_output_tokens (a random model never ends early): equal weights
    logs = [math.log(e.confidence or 0) for e in each]
    assert whole.confidence == pytest.approx(math.exp(sum(logs) / len(logs)), rel=1e-4)
    assert min(e.confidence or 0 for e in each) <= (whole.confidence or 0) <= max(
        e.confidence or 0 for e in each)


async def test_the_service_gives_the_confidence_of_what_the_model_translated(
    tmp_path: Path, settings: config.Settings
) -> None:
    write_ct2(tmp_path, ("__en__", "__pt__"))
    model = Ct2Engine(_model("m2m100"), tmp_path, OPTIONS)
    unscored = FakeEngine({("es", "en")}, name="plain")
    scored = FakeEngine({("fr", "en")}, name="scored", confidence=0.5)
    service = await server.create(with_mt(settings), engines=[model, unscored, scored],
                                  cache=MemoryCache())
    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = stub_of(channel)
            (direct,) = await model.translate_scored(TranslationBatch("en", "pt", ("a big dog",)))
            first = (await stub.Translate(request("en", "pt", "a big dog"))).translations[0]
            again = (await stub.Translate(request("en", "pt", "a big dog"))).translations[0]
            pivots = (await stub.Translate(request("fr", "pt", "un chien"))).translations
            plain = (await stub.Translate(request("es", "pt", "un perro"))).translations
            # a number the model dropped is put back by a repair: no longer what it scored
            repaired = (await stub.Translate(request("en", "pt", "the cat 214"))).translations
    assert (first.text, first.cached) == (direct.text, False)
    assert first.confidence == pytest.approx(direct.confidence, rel=1e-5) and first.confidence > 0
    assert again.cached and again.confidence == first.confidence  # kept with the translation
    (pivot,) = pivots
    assert pivot.pivoted and 0 < pivot.confidence < 0.5  # 0.5 times the model's
    assert [p.confidence for p in plain] == [0.0]
    assert "214" in repaired[0].text and repaired[0].confidence == 0.0
