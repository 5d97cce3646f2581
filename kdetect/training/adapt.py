"""Take kdetect to a new KCAPTCHA site: `kdetect adapt SITE/train [--unlabelled SITE/pool]`.

A site changes KCAPTCHA's settings and fonts; the default model, trained on Gnuboard's, then
misreads it. Its labelled captchas say what the site draws; the renderer can then draw as many
more as training needs, with exact boxes:

1. infer the render config from the labelled captchas (kdetect/data/site_config.py);
2. find the font strips whose glyphs look most like the site's (kdetect/data/font_match.py);
3. render matched captchas, fine-tune the detector on them and on the real labels (boxed by the
   detector trained on the renders), then the glyph reader on the same mixture;
4. read the unlabelled pool, keep the sure and consistent reads as pseudo-labels
   (kdetect/training/pseudo.py), and train both stages again with them;
5. measure on the labelled captchas held out from all training, and write the package.

The site's test captchas are never needed: the estimate comes from the held-out labels.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from kdetect.configio import JsonConfig
from kdetect.data import font_match, site_config
from kdetect.data.renderer import resource_dir
from kdetect.errors import ConfigError, DatasetError, OutputError
from kdetect.fsutil import check_replaceable, write_atomic
from kdetect.images import load_image
from kdetect.serving.evaluate import foreign_answers, read_labels
from kdetect.training.finetune import pseudo_boxes, write_dataset
from kdetect.training.pseudo import PseudoFilter, rejection, shifted

# Under this many labels a site's config and fonts cannot be told; under WARN_LABELS the
# held-out estimate rests on a handful of captchas.
MIN_LABELS, WARN_LABELS = 20, 100
POOL_LIMIT = 5000  # unlabelled captchas read at most
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}
RUN_MARK = ".kdetect-adapt.json"  # marks a run folder adapt made, which its reruns may clear parts of


@dataclass(frozen=True)
class AdaptConfig(JsonConfig):
    """How an adaptation runs; the defaults fit 30 minutes on a 2-core CPU."""

    what = "adapt config"

    synthetic: int = 20_000  # rendered captchas in the inferred config
    val_fraction: float = 0.2  # labelled captchas held out to choose epochs and estimate accuracy
    detector_epochs: int = 4
    detector_steps: int = 200  # per epoch, batches of batch_size
    glyph_epochs: int = 3
    glyph_steps: int = 200  # per epoch, batches of 256 crops
    batch_size: int = 32
    learning_rate: float = 1e-3
    real_share: float = 0.25  # of the training images, how many are the site's own (labelled or pseudo)
    pool_rounds: int = 1  # self-training rounds over the unlabelled pool
    pseudo_confidence: float = 0.9
    fonts_chosen: int = 4
    font_images: int = 40  # captchas rendered per candidate strip
    config_images: int = 40  # captchas rendered per candidate drawing setting
    library_share: float = 0.25  # of the rendered captchas, how many draw from the whole library
    seed: int = 0

    def validate(self) -> None:
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must lie in (0, 0.5), not {self.val_fraction}")
        if not 0.0 <= self.real_share < 1.0 or not 0.0 <= self.library_share < 1.0:
            raise ConfigError("real_share and library_share must lie in [0, 1)")
        if min(self.synthetic, self.detector_epochs, self.detector_steps, self.glyph_epochs, self.glyph_steps,
               self.batch_size, self.fonts_chosen, self.font_images, self.config_images) < 1:
            raise ConfigError("counts, epochs and steps must be at least 1")


Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class Site:
    """A site's labelled captchas, decoded once."""

    paths: list[Path]
    answers: list[str]
    images: list[np.ndarray]


def load_site(folder: str | Path, warn: Callable[[str], None]) -> Site:
    rows = read_labels(folder)
    if len(rows) < MIN_LABELS:
        raise DatasetError(f"{folder} has {len(rows)} labelled captchas; adapt needs at least {MIN_LABELS} "
                           f"(150 or more reads a site well): label more")
    if len(rows) < WARN_LABELS:
        warn(f"only {len(rows)} labelled captchas: the accuracy estimate rests on "
             f"{max(1, round(len(rows) * 0.2))} held-out ones; 150 or more are better")
    missing = [str(p) for p, _ in rows if not p.is_file()]
    if missing:
        raise DatasetError(f"labels.tsv names {len(missing)} file(s) that are not in {folder}, e.g. {missing[0]}; "
                           "fix labels.tsv or add the images")
    images = [load_image(p) for p, _ in rows]
    return Site([p for p, _ in rows], [a for _, a in rows], images)


def pool_images(folder: str | Path, size: tuple[int, int], config: dict, warn: Callable[[str], None]
                ) -> list[tuple[Path, np.ndarray]]:
    """The unlabelled captchas that look like the site (its canvas and paper); refuses a pool
    that is mostly another site's."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:POOL_LIMIT]
    if not files:
        raise DatasetError(f"{folder} holds no captcha images (.jpg, .png, .gif, ...)")
    lo = np.array([c[0] for c in config["background_color"]]) - 12
    hi = np.array([c[1] for c in config["background_color"]]) + 12
    kept, other = [], Counter()
    for path in files:
        try:
            pixels = load_image(path)
        except Exception:  # noqa: BLE001 - an unreadable file in a downloaded pool is skipped, and counted
            other["unreadable"] += 1
            continue
        if (pixels.shape[1], pixels.shape[0]) != size:
            other[f"{pixels.shape[1]}x{pixels.shape[0]}"] += 1
            continue
        paper, _ = site_config.paper_and_ink(pixels)
        if np.any(paper < lo) or np.any(paper > hi):
            other["paper colour"] += 1
            continue
        kept.append((path, pixels))
    if len(kept) < 0.5 * len(files):
        raise DatasetError(f"{len(files) - len(kept)} of the {len(files)} unlabelled captchas in {folder} do not "
                           f"look like the labelled site ({dict(other.most_common(3))} against {size[0]}x{size[1]} "
                           "and its paper colour): is it another site's pool? Leave --unlabelled out or fix it")
    if other:
        warn(f"{sum(other.values())} unlabelled captchas skipped as unlike the site: {dict(other.most_common(3))}")
    return kept


def input_width_for(width: int) -> int:
    """The detector's input width for a canvas: about one input column per image column (the
    scale it trained at), a multiple of 16, from 160 to 320."""
    return int(min(320, max(160, 16 * round(width / 16))))


def split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = max(1, round(n * fraction))
    return sorted(order[k:]), sorted(order[:k])


def site_picture(site: Site, rendered: Path, out: Path, count: int = 4) -> None:
    """Real captchas (left) beside rendered ones in the inferred config (right), `count` rows."""
    real = [Image.fromarray(a) for a in site.images[:count]]
    made = [Image.open(p).convert("RGB") for p in sorted(rendered.glob("*.*")) if p.suffix in (".jpg", ".png")][:count]
    w, h = real[0].size
    sheet = Image.new("RGB", (2 * w + 8, len(real) * (h + 4)), "white")
    for i, im in enumerate(real):
        sheet.paste(im, (0, i * (h + 4)))
    for i, im in enumerate(made):
        sheet.paste(im, (w + 8, i * (h + 4)))
    tmp = out.with_name(f".{out.name}.tmp.png")
    sheet.save(tmp)
    tmp.replace(out)


def adapt(train_dir: str | Path, out_dir: str | Path, pool_dir: str | Path | None = None,
          ac: AdaptConfig = AdaptConfig(), fonts: list[str | Path] = (), model_dir: str | Path | None = None,
          log: Callable[[str], None] = lambda s: None, warn: Callable[[str], None] = lambda s: None,
          progress: Progress = lambda stage, done, total: None, force: bool = False) -> dict:
    """Adapt model_dir (None: the shipped default) to the site of train_dir; writes out_dir/model,
    out_dir/site.json, out_dir/site.png and out_dir/adapt.json, and returns the summary."""
    from kdetect.detector.config import ModelConfig
    from kdetect.package import default_model_dir, package_kind
    from kdetect.serving.evaluate import evaluate
    from kdetect.serving.solver import Solver

    ac.validate()
    started = time.monotonic()
    out = Path(out_dir)
    check_replaceable(out / "model", force)
    # adapt clears its own working folders (fonts/, data-mix-*) on a rerun: only in a run folder it made.
    if out.is_dir() and any(out.iterdir()) and not (out / RUN_MARK).is_file() and not force:
        raise OutputError(f"{out} holds files that no `kdetect adapt` wrote; choose a new --out folder, or give "
                          "--force to let adapt write there")
    model_dir = Path(model_dir or default_model_dir())
    if package_kind(model_dir) != "detector":
        raise ConfigError(f"{model_dir} is not a detector package: adapt continues a two-stage detector")
    site = load_site(train_dir, warn)
    start_cfg = ModelConfig.load(model_dir / "config.json")
    foreign = foreign_answers(list(zip(site.paths, site.answers)), start_cfg.charset)
    if foreign:
        raise DatasetError(f"{foreign}; the model has no class for them: fix those answers in labels.tsv")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / RUN_MARK, json.dumps({"train": str(train_dir), "unlabelled": str(pool_dir)}) + "\n")
    timings: dict[str, float] = {}

    def lap(stage: str, since: float) -> float:
        timings[stage] = round(time.monotonic() - since, 1)
        log(f"{stage}: {timings[stage]:.0f} s")
        return time.monotonic()

    # 1. What the pixels and labels say outright.
    t = time.monotonic()
    config, stats, alphabet_why = site_config.direct_config(site.images, site.answers, site.paths)
    alphabet = config["allowed_symbols"]
    lengths = sorted({len(a) for a in site.answers})
    # Before any rendering or training: a pool of another site is refused in seconds.
    pool = pool_images(pool_dir, (config["width"], config["height"]), config, warn) if pool_dir else []
    starting = Solver(model_dir, symbols=alphabet)

    def find_boxes(images, texts):
        return [pseudo_boxes(r, t) for r, t in zip(starting.read_batch(images), texts)]

    real_boxes = find_boxes(site.images, site.answers)
    agreeing = sum(b is not None for b in real_boxes) / len(real_boxes)
    if agreeing < 0.25:
        warn(f"the starting model finds as many glyphs as the label has characters on only {agreeing:.0%} of the "
             "labelled captchas: check that labels.tsv belongs to these images (one answer per captcha, in order)")

    # 2. The fonts, by analysis by synthesis under the direct config and KCAPTCHA's drawing defaults.
    library = [resource_dir("kcaptcha_bbox") / "library", resource_dir("kcaptcha_bbox") / "fonts",
               *[Path(f) for f in fonts]]
    strips = font_match.library_strips(library)
    search = {**config, "fluctuation_amplitude": 8, "no_spaces": False}
    site_glyphs = font_match.templates(site.images, real_boxes)
    n_heads = len({font_match.family(s) for s in strips})
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        progress("fonts", done[0], n_heads + 4 * 5)

    # Candidates are boxed by the renderer itself: the detector learnt to put its boxes exactly there.
    ranked = font_match.rank_strips(search, strips, site_glyphs, None, count=ac.font_images, seed=ac.seed,
                                    progress=tick)
    chosen = font_match.choose_strips(ranked, most=ac.fonts_chosen)
    font_dir = out / "fonts"
    if font_dir.exists():
        shutil.rmtree(font_dir)
    font_dir.mkdir()
    for strip in chosen:
        shutil.copyfile(strip, font_dir / strip.name)
    log("fonts chosen: " + ", ".join(f"{s.stem} ({v:.3f})" for s, v in ranked if s in chosen))
    t = lap("fonts", t)

    # 3. The drawing settings, by synthesis with the chosen fonts.
    evals = [0]
    fitted, distance = site_config.fit_drawing(
        {**config, "fonts": [str(font_dir.resolve())]}, site_config.measured_features(stats),
        site_config.feature_spread(stats), count=ac.config_images, rounds=1, seed=ac.seed,
        progress=lambda: (evals.__setitem__(0, evals[0] + 1), progress("config", evals[0], 4 * 22)))
    site_json = {**fitted, "fonts": "fonts"}
    write_atomic(out / "site.json", json.dumps(site_json, indent=2) + "\n")
    t = lap("config", t)

    # 4. Matched data: the site's config, its fonts mostly, the whole library for the rest.
    from kdetect.data.generate import DatasetSpec, generate

    libraries = [str(p.resolve()) for p in library if p.is_dir()]
    reps = max(1, round((1 - ac.library_share) / max(ac.library_share, 1e-6)))
    entries = [str(font_dir.resolve())] * (reps * len(libraries)) + libraries if ac.library_share > 0 else \
        [str(font_dir.resolve())]
    render_config = {**fitted, "fonts": entries}
    made = [0]

    def rendered(n: int) -> None:
        made[0] += n
        progress("render", made[0], ac.synthetic)

    generate(DatasetSpec(config=render_config, seed=ac.seed + 1, count=ac.synthetic, tfrecord=True),
             out / "data-synth", progress=rendered, source="the inferred site config")
    generate(DatasetSpec(config=site_json | {"fonts": [str(font_dir.resolve())]}, seed=ac.seed + 2, count=8),
             out / "data-preview", source="the inferred site config")
    site_picture(site, out / "data-preview", out / "site.png")
    t = lap("render", t)

    # 5. Both stages on the renders and the real labels; the pool; both stages again.
    train_idx, val_idx = split(len(site.paths), ac.val_fraction, ac.seed)
    items = list(zip(site.paths, site.answers))
    val_items = [items[i] for i in val_idx]
    train_items = [items[i] for i in train_idx]
    width = input_width_for(config["width"])
    model_cfg = dataclasses.replace(start_cfg, input_width=width, alphabets=(alphabet,),
                                    answer_length=lengths[0] if len(lengths) == 1 else None,
                                    answer_lengths=(lengths[0], lengths[-1]) if len(lengths) > 1 else None)
    write_dataset(starting, val_items, out / "data-val", (alphabet,), False, ac.seed, force=True)
    # The real labels train the first detector too, on the starting model's boxes where it finds
    # as many glyphs as the answer has (later rounds box them with the adapted detector).
    real_parts: list[tuple[Path, int]] = []
    if sum(real_boxes[i] is not None for i in train_idx):
        write_dataset(starting, train_items, out / "data-real-start", (alphabet,), True, ac.seed, force=True)
        real_parts = [(out / "data-real-start", 1)]
    current = model_dir
    summary_stages = []
    rounds = 1 + (ac.pool_rounds if pool_dir else 0)
    for r in range(rounds):
        det_run = out / f"detector-{r}"
        mix = _mixture(out / f"data-mix-{r}", out / "data-synth", real_parts, ac, alphabet)
        det = _train_detector(mix, out / "data-val", det_run, current, model_cfg, ac, len(val_items), r, log, progress)
        # The real labels get their boxes from the detector that now knows the site.
        boxer = Solver(det_run / "model", symbols=alphabet)
        labelled = out / "data-real"
        write_dataset(boxer, train_items, labelled, (alphabet,), False, ac.seed, force=True)
        write_dataset(boxer, val_items, out / "data-val-boxed", (alphabet,), False, ac.seed, force=True)
        parts = [(labelled, 1)] + [p for p in real_parts if p[0] not in (labelled, out / "data-real-start")]
        mix = _mixture(out / f"data-mix-{r}g", out / "data-synth", parts, ac, alphabet)
        glyph_run = out / f"glyphs-{r}"
        _train_glyphs(mix, out / "data-val-boxed", glyph_run, det_run / "model", current, width, ac,
                      len(val_items), r, log, progress)
        current = glyph_run / "model"
        reader = Solver(current, symbols=alphabet)
        held = evaluate(reader, _val_folder(out, val_items))
        summary_stages.append({"round": r, "detector_val": det, "held_out": held["accuracy"],
                               "real_labelled": len(train_items)})
        log(f"round {r}: held-out full-string accuracy {held['accuracy']:.3f} on {len(val_items)} labels")
        if r + 1 < rounds:
            pseudo, reasons = _pseudo_labels(reader, pool, PseudoFilter((lengths[0], lengths[-1]), alphabet,
                                                                        ac.pseudo_confidence), progress)
            log(f"pool: {len(pseudo)} of {len(pool)} pseudo-labelled (rejected: {dict(reasons)})")
            summary_stages[-1]["pseudo_labels"] = len(pseudo)
            summary_stages[-1]["pseudo_rejected"] = dict(reasons)
            if pseudo:
                write_dataset(reader, pseudo, out / "data-pool", (alphabet,), True, ac.seed, force=True)
                real_parts = [(labelled, 1), (out / "data-pool", 1)]
        t = lap(f"round {r}", t)

    final = out / "model"
    _finish_package(current, final, site_json, alphabet, lengths, force)
    reader = Solver(final, symbols=None)
    held = evaluate(reader, _val_folder(out, val_items))
    summary = {
        "train": str(train_dir), "unlabelled": str(pool_dir) if pool_dir else None, "start": str(model_dir),
        "adapt_config": dataclasses.asdict(ac), "site_config": site_json, "alphabet_reason": alphabet_why,
        "config_distance": distance, "fonts_ranked": [[s.stem, round(v, 4)] for s, v in ranked[:12]],
        "fonts_chosen": [s.stem for s in chosen], "input_width": width, "labels": len(items),
        "held_out": len(val_items), "held_out_accuracy": held["accuracy"], "rounds": summary_stages,
        "pool_images": len(pool), "seconds": round(time.monotonic() - started, 1), "timings": timings,
    }
    write_atomic(out / "adapt.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _val_folder(out: Path, val_items: list[tuple[Path, str]]) -> Path:
    """The held-out labels as a folder evaluate() reads: links to the images and a labels.tsv."""
    folder = out / "held-out"
    folder.mkdir(exist_ok=True)
    lines = []
    for path, answer in val_items:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
        lines.append(f"{path.name}\t{answer}\n")
    write_atomic(folder / "labels.tsv", "".join(lines))
    return folder


def _mixture(out: Path, synth: Path, real: list[tuple[Path, int]], ac: AdaptConfig, alphabet: str) -> Path:
    """Rendered shards and the site's own, the latter repeated until they are about real_share."""
    from kdetect.data.tfrecord import load_manifest, write_mixture

    parts = [(synth, 1)]
    n_synth = load_manifest(synth)["images"]
    n_real = sum(load_manifest(p)["images"] for p, _ in real)
    if n_real:
        repeats = max(1, round(ac.real_share / (1 - ac.real_share) * n_synth / n_real))
        parts += [(p, repeats) for p, _ in real]
    if out.exists():
        shutil.rmtree(out)
    write_mixture(out, parts, {"allowed_symbols": alphabet})
    return out


def _train_detector(mix: Path, val: Path, run: Path, start: Path, model_cfg, ac: AdaptConfig, n_val: int, r: int,
                    log, progress) -> float:
    from kdetect.training.detector import TrainConfig, train

    tc = TrainConfig(train_data=str(mix), val_data=str(val), out_dir=str(run), model=model_cfg,
                     init_from=str(start), epochs=ac.detector_epochs, steps_per_epoch=ac.detector_steps,
                     batch_size=ac.batch_size, learning_rate=ac.learning_rate * (0.5 ** r),
                     warmup_steps=min(100, ac.detector_steps), val_images=n_val, patience=ac.detector_epochs,
                     seed=ac.seed + r, augment=0.5, kmeans_anchors=False, tune_thresholds=True, ema_decay=0.0)
    summary = train(tc, log=lambda s: (log(s), _epoch_progress(s, "detector", ac.detector_epochs, progress)),
                    verbose=0, force=True)
    return summary["val_string_accuracy"]


def _train_glyphs(mix: Path, val: Path, run: Path, detector: Path, start: Path, width: int, ac: AdaptConfig,
                  n_val: int, r: int, log, progress) -> None:
    from kdetect.glyphs.config import GlyphConfig
    from kdetect.package import GLYPH_CONFIG
    from kdetect.training.glyphs import GlyphTrainConfig, train_glyphs

    gcfg = dataclasses.replace(GlyphConfig.load(Path(start) / GLYPH_CONFIG), input_width=width)
    tc = GlyphTrainConfig(train_data=str(mix), val_data=str(val), out_dir=str(run), glyphs=gcfg,
                          epochs=ac.glyph_epochs, steps_per_epoch=ac.glyph_steps,
                          learning_rate=ac.learning_rate * (0.5 ** r), warmup_steps=min(100, ac.glyph_steps),
                          val_images=n_val, patience=ac.glyph_epochs, seed=ac.seed + r, augment=0.3,
                          ema_decay=0.0, init_from=str(start), detector=str(detector))
    train_glyphs(tc, log=lambda s: (log(s), _epoch_progress(s, "glyphs", ac.glyph_epochs, progress)),
                 verbose=0, force=True)


def _epoch_progress(line: str, stage: str, epochs: int, progress: Progress) -> None:
    if line.startswith("epoch "):
        try:
            progress(stage, int(line.split()[1].rstrip(":")), epochs)
        except (IndexError, ValueError):
            pass


def _pseudo_labels(reader, pool: list[tuple[Path, np.ndarray]], rule: PseudoFilter, progress
                   ) -> tuple[list[tuple[Path, str]], Counter]:
    kept, reasons = [], Counter()
    for start in range(0, len(pool), 64):
        chunk = pool[start:start + 64]
        first = reader.read_batch([p for _, p in chunk])
        second = reader.read_batch([shifted(p) for _, p in chunk])
        for (path, _), a, b in zip(chunk, first, second):
            why = rejection(a, b, rule)
            if why is None:
                kept.append((path, a.text))
            else:
                reasons[why] += 1
        progress("pool", min(len(pool), start + 64), len(pool))
    return kept, reasons


def _finish_package(current: Path, final: Path, site_json: dict, alphabet: str, lengths: list[int],
                    force: bool) -> None:
    """The last round's package as out/model, with the site's config beside it."""
    from kdetect.fsutil import staged_output

    with staged_output(final, force) as staged:
        for f in current.iterdir():
            if f.is_file():
                shutil.copyfile(f, staged / f.name)
        write_atomic(staged / "site.json", json.dumps({**site_json, "length_range": [lengths[0], lengths[-1]]},
                                                      indent=2) + "\n")
