"""The figures eval reports: alignment of a read answer with the truth, and the score built on it."""

import pytest

from kdetect.serving.evaluate import alignment, score


def test_alignment_pairs_each_truth_char_with_what_was_read():
    assert alignment("123456", "123456") == list(zip("123456", "123456"))
    # A lost glyph, an extra one and a misread one.
    assert alignment("123456", "12456") == [("1", "1"), ("2", "2"), ("3", ""), ("4", "4"), ("5", "5"), ("6", "6")]
    assert alignment("1234", "12734") == [("1", "1"), ("2", "2"), ("", "7"), ("3", "3"), ("4", "4")]
    assert alignment("1234", "1284") == [("1", "1"), ("2", "2"), ("3", "8"), ("4", "4")]
    assert alignment("", "ab") == [("", "a"), ("", "b")]
    assert alignment("ab", "") == [("a", ""), ("b", "")]


def test_score_counts_whole_answers_chars_lengths_and_confusions():
    truths = ["123456", "123456", "11", "42", "42"]
    reads = ["123456", "123856", "1", "42", "l2"]
    result = score(truths, reads)
    assert result["images"] == 5
    assert result["accuracy"] == pytest.approx(2 / 5)
    # 18 truth chars: one misread 4, one lost 1, one 4 read as l.
    assert result["char_accuracy"] == pytest.approx(15 / 18)
    assert result["by_length"] == {"2": {"images": 3, "accuracy": pytest.approx(1 / 3)},
                                   "6": {"images": 2, "accuracy": pytest.approx(1 / 2)}}
    confused = {(c["truth"], c["read"]): c["count"] for c in result["confused"]}
    assert confused == {("4", "8"): 1, ("1", "(missing)"): 1, ("4", "l"): 1}


def test_score_names_extra_glyphs_and_survives_no_images():
    result = score(["12"], ["122"])
    assert result["accuracy"] == 0.0 and result["char_accuracy"] == 1.0
    assert result["confused"] == [{"truth": "(extra)", "read": "2", "count": 1}]
    empty = score([], [])
    assert empty["images"] == 0 and empty["accuracy"] == 0.0 and empty["confused"] == []
