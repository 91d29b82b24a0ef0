"""The rule that cuts a stable prefix into spoken pieces (simultaneous mode)."""

from __future__ import annotations

import pytest

from session_svc import pieces


def _cut(text: str, committed: int = 0, min_words: int = 3, max_words: int = 10,
         language: str = "en") -> str:
    words = pieces.split(text, language)
    return pieces.join(words[committed:pieces.next_piece(words, committed, min_words, max_words)],
                       language)


@pytest.mark.parametrize(("text", "piece"), [
    ("so I went there, and then", "so I went there,"),
    ("one two three; four five six: seven", "one two three; four five six:"),  # the LAST mark
    ("she said \"go home.\" and left", "she said \"go home.\""),  # a closer after the mark
    ("(one two three.) four", "(one two three.)"),
    ("what did you say? I", "what did you say?"),
])
def test_a_piece_ends_at_the_last_clause_mark(text: str, piece: str) -> None:
    assert _cut(text) == piece


def test_a_clause_shorter_than_the_minimum_waits() -> None:
    assert _cut("yes, I think") == ""  # "yes," is one word
    assert _cut("yes, I think so,") == "yes, I think so,"  # the next mark makes it long enough
    assert _cut("yes, I") == ""


def test_with_no_clause_mark_the_cap_cuts() -> None:
    text = "one two three four five six seven eight nine ten eleven"
    assert _cut(text, max_words=4) == "one two three four"
    assert _cut(text, committed=4, max_words=4) == "five six seven eight"
    assert _cut("one two three", max_words=4) == ""


def test_committed_words_are_never_cut_again() -> None:
    text = "one two three, four five six, seven"
    assert _cut(text) == "one two three, four five six,"
    assert _cut(text, committed=6) == ""  # "seven" alone: no mark, under the cap
    # a mark inside what is committed does not count for the next piece
    assert _cut("one two three, four five", committed=3, max_words=3) == ""


def test_a_stable_prefix_that_grew_a_lot_goes_to_its_last_mark_at_once() -> None:
    words = pieces.split("a b c, d e f, g h i, j", "en")
    assert pieces.next_piece(words, 0, 3, 10) == 9


def test_unspaced_scripts_count_characters_and_keep_closers_with_their_mark() -> None:
    assert pieces.split("今日は 晴れ", "ja") == ["今", "日", "は", "晴", "れ"]
    assert _cut("今日は晴れです。明日は", language="ja") == "今日は晴れです。"
    assert _cut("彼は「行く。」と言った", language="ja") == "彼は「行く。」"
    assert _cut("我们今天去公园，然后", language="zh-CN") == "我们今天去公园，"
    assert _cut("一二三四五六七八九十十一", max_words=10, language="zh") == "一二三四五六七八九十"


def test_a_lone_closer_is_not_a_clause_mark() -> None:
    assert not pieces.ends_clause("»")
    assert pieces.ends_clause("end.»")
    assert not pieces.ends_clause("word")
