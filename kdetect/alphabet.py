"""Which alphabet a captcha was drawn from, guessed from all of its glyphs at once.

A site draws every answer from one alphabet (KCAPTCHA's allowed_symbols), while the default
model learns from a mixture of them. Read alone, a Gnuboard "1" in an unfamiliar font can look
more like an "l"; read beside five plain digits, it is a 1, because five plain digits come far
more often from the digits-only alphabet than from one that also holds letters.

The guess is Bayes' rule over the training alphabets, each weighted as often as the training
data drew it. A glyph's class scores, normalised over the charset, estimate P(char | glyph)
under the training mixture; under alphabet A that becomes proportional to
P(char | glyph) * u_A(char) / m(char), where u_A is uniform over A and m is the mixture's
marginal. An answer's glyphs are taken as independent given A, so
P(A | glyphs) is proportional to prior(A) * prod over glyphs of sum over chars of
P(char | glyph) * u_A(char) / m(char). The decoder then reads the captcha with the winner as
its symbols.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def alphabet_table(alphabets: tuple[str, ...], charset: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Training alphabets (a repeated one was drawn that many times as often) ->
    (distinct alphabets, log prior [A], likelihood ratios u_A(c) / m(c) [A, C])."""
    counts = Counter(alphabets)
    names = list(counts)
    prior = np.array([counts[a] for a in names], np.float64) / len(alphabets)
    uniform = np.array([[(c in a) / len(set(a)) for c in charset] for a in names])  # [A, C]
    marginal = prior @ uniform  # [C]
    ratio = np.divide(uniform, marginal, out=np.zeros_like(uniform), where=marginal > 0)
    return names, np.log(prior), ratio


def guess_alphabet(class_probs: np.ndarray, alphabets: Sequence[str], charset: str) -> str | None:
    """The most probable training alphabet for one answer's glyphs.

    class_probs: [K, C] per glyph class scores (sigmoids, in any scale: each row is normalised).
    None when there are no glyphs or no alphabets to choose from."""
    if len(class_probs) == 0 or not alphabets:
        return None
    names, log_prior, ratio = alphabet_table(tuple(alphabets), charset)
    probs = class_probs / np.maximum(class_probs.sum(-1, keepdims=True), 1e-30)  # [K, C]
    evidence = np.log(np.maximum(probs @ ratio.T, 1e-300)).sum(0)  # [A]
    return names[int(np.argmax(log_prior + evidence))]


def training_alphabets(manifest: dict) -> tuple[str, ...]:
    """The allowed_symbols the training data drew answers from, one entry per choice (a repeated
    one is drawn more often); () where the data's config does not say."""
    allowed = manifest.get("config", {}).get("allowed_symbols")
    if isinstance(allowed, str):
        return (allowed,)
    if isinstance(allowed, dict) and isinstance(allowed.get("choice"), list):
        return tuple(a for a in allowed["choice"] if isinstance(a, str))
    return ()
