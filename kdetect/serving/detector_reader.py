"""Reading captchas with a detector package, and its glyph reader where it has one."""

from __future__ import annotations

import dataclasses

import numpy as np

from kdetect.detector.config import ModelConfig
from kdetect.detector.decode import decode_batch, proposal_batch, score_floor
from kdetect.glyphs.config import GlyphConfig
from kdetect.glyphs.decode import look_twice, refine
from kdetect.package import CONFIG, GLYPH_CONFIG, load_glyph_reader, load_package, package_kind
from kdetect.readings import Reading
from kdetect.serving.reader import Reader, glyph_inference, inference, packaged_networks
from kdetect.serving.shift_vote import read_with_votes


def proposing_config(cfg: ModelConfig, gcfg: GlyphConfig, threshold: float | None = None) -> ModelConfig:
    """The detector's config as it proposes glyphs to the reader: its score threshold down to
    the reader's proposal threshold (or `threshold`)."""
    lowest = min(cfg.score_threshold, gcfg.proposal_threshold if threshold is None else threshold)
    return dataclasses.replace(cfg, score_threshold=lowest)


class DetectorReader(Reader):
    """The YOLO detector: reads answers of any length, with a box per glyph; where the package
    has a glyph reader (kdetect/glyphs), that second stage keeps and names the glyphs."""

    def _load_model(self) -> None:
        networks = packaged_networks(self.model_dir, self.backend)
        if networks is not None:
            # The package's own conversions: only its configs are read, no Keras network is built.
            package_kind(self.model_dir)  # a classifier's config is refused here, naming the kind
            self.config = ModelConfig.load(self.model_dir / CONFIG)
            self._infer = networks[""]
            has_glyphs = (self.model_dir / GLYPH_CONFIG).is_file()
            self.glyph_config = GlyphConfig.load(self.model_dir / GLYPH_CONFIG) if has_glyphs else None
            if has_glyphs:
                run = networks["glyphs"]
                self._read_glyphs = lambda images, centres: run(images, centres)[0]
        else:
            detector, self.config = load_package(self.model_dir)
            self._infer = inference(detector, self.config, self.model_dir, self.backend)
            glyphs = load_glyph_reader(self.model_dir)
            self.glyph_config = glyphs[1] if glyphs else None
            if glyphs:
                self._read_glyphs = glyph_inference(*glyphs, self.model_dir, self.backend)
        if self.glyph_config is not None:
            self._proposing = proposing_config(self.config, self.glyph_config)

    def _read_arrays(self, images: np.ndarray, size: tuple[int, int], length: int | None = None) -> list[Reading]:
        length = length if length is not None else self.config.answer_length
        gcfg = self.glyph_config
        if gcfg is None:
            return self._read_lengths(images, size, length)
        return read_with_votes(images, size, (self.config.input_width, self.config.input_height),
                               lambda batch: self._read_lengths(batch, size, length), gcfg.vote_shifts, gcfg.vote_below,
                               gcfg.vote_settle_after)

    def _read_lengths(self, images: np.ndarray, size: tuple[int, int], length: int | None) -> list[Reading]:
        readings = self._read_length(images, size, length)
        if length is None and self.config.answer_lengths is not None:
            # An adapted site's range: a reading outside it is read again at the nearest length it
            # allows (a doubled glyph's weaker box goes, a faint glyph comes back).
            lo, hi = self.config.answer_lengths
            for want in (lo, hi):
                redo = [i for i, r in enumerate(readings) if min(max(len(r.text), lo), hi) == want != len(r.text)]
                if redo:
                    for i, r in zip(redo, self._read_length(images[redo], size, want)):
                        readings[i] = r
        return readings

    def _read_length(self, images: np.ndarray, size: tuple[int, int], length: int | None) -> list[Reading]:
        sizes = [size] * len(images)
        outputs = self._infer(images)
        if self.glyph_config is None:
            return decode_batch(outputs, self.config, sizes, self.symbols, self.guess_alphabet, length)
        proposing = self._proposing
        if length is not None:
            proposing = dataclasses.replace(proposing, score_threshold=score_floor(proposing, length))
        found = proposal_batch(outputs, proposing, sizes)
        columns, probs, seconds = look_twice(images, found, sizes, self.glyph_config, self._read_glyphs, length)
        return [refine(p, pr, self.glyph_config, self.config.alphabets, self.symbols, self.guess_alphabet, length, dp,
                       cols, second)
                for (p, dp), pr, cols, second in zip(found, probs, columns, seconds)]
