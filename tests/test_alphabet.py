"""Guessing a captcha's alphabet from its glyphs: Bayes over the training alphabets."""

import numpy as np
import pytest

from kdetect.alphabet import alphabet_table, guess_alphabet, training_alphabets

CHARSET = "0123456789abcdef"


def probs(*rows: dict[str, float]) -> np.ndarray:
    """[K, C] class scores, 0.01 for every character a row does not name."""
    out = np.full((len(rows), len(CHARSET)), 0.01)
    for k, row in enumerate(rows):
        for c, p in row.items():
            out[k, CHARSET.index(c)] = p
    return out


def test_the_table_weights_alphabets_as_often_as_they_were_drawn():
    names, log_prior, ratio = alphabet_table(("0123456789", "0123456789", CHARSET), CHARSET)
    assert names == ["0123456789", CHARSET]
    np.testing.assert_allclose(np.exp(log_prior), [2 / 3, 1 / 3])
    # A digit's mixture marginal is 2/3 * 1/10 + 1/3 * 1/16; a letter's only 1/3 * 1/16.
    np.testing.assert_allclose(ratio[0, 0], 0.1 / (2 / 30 + 1 / 48))
    assert ratio[0, CHARSET.index("a")] == 0
    np.testing.assert_allclose(ratio[1, CHARSET.index("a")], (1 / 16) / (1 / 48))


def test_plain_digits_point_to_the_digits_and_one_clear_letter_to_the_wider_alphabet():
    alphabets = ("0123456789", CHARSET)
    doubtful = {"b": 0.6, "6": 0.5}
    digits = probs({"3": 0.99}, {"5": 0.98}, {"0": 0.97}, {"7": 0.99}, {"2": 0.99}, doubtful)
    assert guess_alphabet(digits, alphabets, CHARSET) == "0123456789"
    # Two plain digits are too few to outweigh a glyph that leans to a letter.
    assert guess_alphabet(digits[[0, 1, 5]], alphabets, CHARSET) == CHARSET
    letter = probs({"3": 0.99}, {"e": 0.98}, {"0": 0.97}, {"7": 0.99}, {"2": 0.99}, doubtful)
    assert guess_alphabet(letter, alphabets, CHARSET) == CHARSET


def test_the_prior_decides_between_alphabets_that_explain_the_glyphs_alike():
    # Only digits 2-9 seen: both alphabets hold them; the one drawn more often wins.
    seen = probs({"4": 0.99}, {"7": 0.99})
    assert guess_alphabet(seen, ("23456789", "23456789", "0123456789"), CHARSET) == "23456789"
    assert guess_alphabet(seen, ("23456789", "0123456789", "0123456789", "0123456789", "0123456789",
                                 "0123456789", "0123456789"), CHARSET) == "0123456789"


@pytest.mark.parametrize("glyphs,alphabets", [(np.zeros((0, len(CHARSET))), ("0123456789",)),
                                              (probs({"1": 0.9}), ())])
def test_nothing_to_guess_from_is_no_guess(glyphs, alphabets):
    assert guess_alphabet(glyphs, alphabets, CHARSET) is None


def test_training_alphabets_come_from_the_data_config():
    assert training_alphabets({"config": {"allowed_symbols": "0123456789"}}) == ("0123456789",)
    choice = {"choice": ["0123456789", "0123456789", "abc"]}
    assert training_alphabets({"config": {"allowed_symbols": choice}}) == ("0123456789", "0123456789", "abc")
    assert training_alphabets({"config": {}}) == ()
    assert training_alphabets({}) == ()
