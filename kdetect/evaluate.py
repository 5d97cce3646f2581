"""Accuracy of a solver on a labelled folder (images + labels.tsv, `file<TAB>answer`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kdetect.errors import DatasetError, InvalidImageError


def read_labels(folder: str | Path) -> list[tuple[Path, str]]:
    folder = Path(folder)
    labels = folder / "labels.tsv"
    if not labels.is_file():
        raise DatasetError(f"{folder} has no labels.tsv (lines of `file<TAB>answer`); "
                           "`kdetect generate` writes one beside its images")
    rows = []
    for n, line in enumerate(labels.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DatasetError(f"{labels}:{n}: expected `file<TAB>answer`, got {line!r}")
        rows.append((folder / parts[0], parts[1]))
    if not rows:
        raise DatasetError(f"{labels} lists no images")
    return rows


def alignment(truth: str, read: str) -> list[tuple[str, str]]:
    """Edit-distance alignment as (truth char, read char) pairs; '' marks a missing or extra glyph."""
    n, m = len(truth), len(read)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (truth[i - 1] != read[j - 1]))
    pairs, i, j = [], n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (truth[i - 1] != read[j - 1]):
            pairs.append((truth[i - 1], read[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            pairs.append((truth[i - 1], ""))
            i -= 1
        else:
            pairs.append(("", read[j - 1]))
            j -= 1
    return pairs[::-1]


def score(truths: list[str], reads: list[str]) -> dict:
    """Full-string and per-character accuracy, accuracy by answer length, most confused characters."""
    chars = correct_chars = 0
    confusions: Counter[tuple[str, str]] = Counter()
    by_length: dict[int, list[int]] = {}
    for truth, read in zip(truths, reads):
        by_length.setdefault(len(truth), []).append(truth == read)
        pairs = alignment(truth, read)
        chars += len(truth)
        correct_chars += sum(t == r for t, r in pairs if t)
        confusions.update((t, r) for t, r in pairs if t != r)
    return {
        "images": len(truths),
        "accuracy": sum(t == r for t, r in zip(truths, reads)) / max(1, len(truths)),
        "char_accuracy": correct_chars / max(1, chars),
        "by_length": {str(k): {"images": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(by_length.items())},
        "confused": [{"truth": t or "(extra)", "read": r or "(missing)", "count": c}
                     for (t, r), c in confusions.most_common(10)],
    }


def evaluate(solver, folder: str | Path, batch_size: int = 64) -> dict:
    """Read every labelled image; unreadable files count as wrong and are listed under 'invalid'."""
    rows = read_labels(folder)
    reads, invalid = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        try:
            reads += [r.text for r in solver.read_batch([p for p, _ in chunk])]
        except InvalidImageError:
            for path, _ in chunk:
                try:
                    reads.append(solver.read(path).text)
                except InvalidImageError as err:
                    reads.append("")
                    invalid.append(str(err))
    result = score([t for _, t in rows], reads)
    result["invalid"] = invalid
    result["mistakes"] = [{"file": p.name, "truth": t, "read": r} for (p, t), r in zip(rows, reads) if t != r][:50]
    return result
