"""Accuracy of a solver on a labelled folder (images + labels.tsv, `file<TAB>answer`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kdetect.errors import DatasetError, InvalidImageError


# A labels.tsv is a line per image; a million lines is far past any labelled set, and the cap
# keeps a wrong file (an image or an archive named labels.tsv) from being read whole.
MAX_LABELS_BYTES = 64 * 1024 * 1024


def read_labels(folder: str | Path) -> list[tuple[Path, str]]:
    """(image path, answer) for each line `file<TAB>answer` of folder/labels.tsv: UTF-8, with or
    without a byte-order mark, spaces around either field ignored, blank lines skipped."""
    folder = Path(folder)
    labels = folder / "labels.tsv"
    if not labels.is_file():
        raise DatasetError(f"{folder} has no labels.tsv (lines of `file<TAB>answer`); "
                           "`kdetect generate` writes one beside its images")
    try:
        with labels.open("rb") as f:
            data = f.read(MAX_LABELS_BYTES + 1)
    except OSError as err:
        raise DatasetError(f"cannot read {labels}: {err.strerror or err}") from None
    if len(data) > MAX_LABELS_BYTES:
        raise DatasetError(f"{labels} is over {MAX_LABELS_BYTES:,} bytes: not a labels file of `file<TAB>answer` "
                           "lines; check that it is the right file")
    try:
        # utf-8-sig drops the byte-order mark some editors (Notepad, Excel) put first.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DatasetError(f"{labels}:{line}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8, "
                           f"e.g. `iconv -f CP949 -t UTF-8 labels.tsv > utf8.tsv` for a Korean Windows file, "
                           "then rename it to labels.tsv") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split("\t")]
        if len(parts) != 2 or not all(parts):
            raise DatasetError(f"{labels}:{n}: expected `file<TAB>answer`, got {line!r}")
        rows.append((folder / parts[0], parts[1]))
    if not rows:
        raise DatasetError(f"{labels} lists no images")
    return rows


def foreign_answers(rows: list[tuple[Path, str]], charset: str) -> str | None:
    """What names the answers that use characters a model with this charset never reads, or None
    where there are none."""
    known = set(charset)
    bad = [(path, answer) for path, answer in rows if set(answer) - known]
    if not bad:
        return None
    chars = "".join(sorted({c for _, answer in bad for c in answer} - known))
    shown = ", ".join(f"{path.name}: {answer!r}" for path, answer in bad[:3])
    return (f"{len(bad)} of {len(rows)} answers use characters the model never reads ({chars!r}; it reads "
            f"{charset!r}): {shown}{' ...' if len(bad) > 3 else ''}")


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
    """Read every labelled image; unreadable files count as wrong and are listed under 'invalid',
    and what a person should know about the labels (see foreign_answers) under 'warnings'."""
    rows = read_labels(folder)
    solver.load()
    foreign = foreign_answers(rows, solver.config.charset)
    warnings = [f"{foreign}; they count as wrong: check labels.tsv (letters in the wrong case?)"] if foreign else []
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
    result["warnings"] = warnings
    result["mistakes"] = [{"file": p.name, "truth": t, "read": r} for (p, t), r in zip(rows, reads) if t != r][:50]
    return result
