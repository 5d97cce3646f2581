"""Build a dataset: PHP workers render chunks in parallel into images or TFRecord shards.

Every chunk is finished by one atomic rename (its shard, or its part of the annotations), and
image i is the same whichever worker renders it, so a run that was killed and started again
skips the finished chunks and produces exactly what an uninterrupted run would have.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kdetect.data import renderer
from kdetect.errors import ConfigError, DatasetError, OutputError
from kdetect.fsutil import check_folder_path, write_atomic

SETTINGS = "dataset.json"


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is made of; saved beside it, and compared when a run is resumed."""

    config: dict
    seed: int
    count: int
    tfrecord: bool = False
    shard_size: int = 1000
    preset: str | None = None
    renderer_version: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def chunks(self) -> list[tuple[int, int, int]]:
        """(chunk number, first image, image count) for every chunk."""
        starts = range(0, self.count, self.shard_size)
        return [(k, s, min(self.shard_size, self.count - s)) for k, s in enumerate(starts)]

    def part_file(self, k: int) -> str:
        return f".parts/part-{k:05d}.jsonl"

    def chunk_file(self, k: int) -> str:
        """The file whose appearance marks chunk k finished."""
        if self.tfrecord:
            return f"shard-{k:05d}-of-{len(self.chunks):05d}.tfrecord"
        return self.part_file(k)


def generate(spec: DatasetSpec, out_dir: str | Path, workers: int | None = None,
             progress: Callable[[int], None] | None = None, source: str | None = None) -> dict:
    """Render the dataset into out_dir (resuming if it was started before); returns the manifest.
    source: how errors name the render config (the user's file or preset); out_dir is written
    to only once the config is known to be good, and only if it is empty or this dataset's own."""
    if spec.count < 1 or spec.shard_size < 1:
        raise DatasetError("count and shard size must be at least 1")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be at least 1, not {workers!r}; leave it out to use every core")
    out = Path(out_dir)
    fonts = _checked_config(spec.config, source)
    _make_folder(out)
    _claim(out, spec)
    _check_fonts(out, fonts)
    config_file = out / "config.json"
    report = progress or (lambda n: None)
    pending = []
    for k, start, n in spec.chunks:
        if (out / spec.chunk_file(k)).is_file():
            report(n)
        else:
            pending.append((k, start, n))
    build = _build_shard if spec.tfrecord else _build_images
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for future in [pool.submit(build, spec, config_file, out, k, start, n, report) for k, start, n in pending]:
            future.result()
    return _finish(spec, out)


def _checked_config(config: dict, source: str | None) -> dict[str, str]:
    """The renderer's check of a config (see renderer.check_config), made on a copy outside the
    output folder: a config it refuses leaves no trace there to block the corrected rerun."""
    with tempfile.TemporaryDirectory(prefix="kdetect-config-") as scratch:
        path = Path(scratch) / "config.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        return renderer.check_config(path, name=source or "the render config")


def _make_folder(out: Path) -> None:
    check_folder_path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot make the output folder {out}: {err.strerror or err}") from None


def _claim(out: Path, spec: DatasetSpec) -> None:
    """Record the spec, or check that a resumed run asks for the same dataset."""
    settings = json.loads(json.dumps(asdict(spec)))
    path = out / SETTINGS
    if path.is_file():
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            raise DatasetError(f"{out} holds a {SETTINGS} that kdetect cannot read, so it is not a kdetect dataset; "
                               "choose an empty --out folder") from None
        if recorded != settings:
            raise DatasetError(f"{out} already holds a dataset made with other settings ({path}); "
                               "choose a new --out folder, or delete that one to start again")
    elif any(out.iterdir()):
        # Even a lone config.json may be the user's own: only a folder that is already ours is written to.
        raise DatasetError(f"{out} is not empty and is not a kdetect dataset; choose an empty --out folder")
    else:
        write_atomic(path, json.dumps(settings, indent=2) + "\n")
    # After the settings, which claim the folder: a run killed in between rewrites it on resume.
    write_atomic(out / "config.json", json.dumps(spec.config, indent=2) + "\n")


def _check_fonts(out: Path, fonts: dict[str, str]) -> None:
    """Record the font strips' hashes; a resumed run must draw with the very same strips."""
    path = out / "fonts.json"
    if path.is_file() and json.loads(path.read_text()) != fonts:
        raise DatasetError(f"the font strips changed since {out} was started ({path} lists the old ones); "
                           "choose a new --out folder, or delete that one to start again")
    if not path.is_file():
        write_atomic(path, json.dumps(fonts, indent=2, sort_keys=True) + "\n")


def _build_images(spec: DatasetSpec, config_file: Path, out: Path, k: int, start: int, n: int,
                  report: Callable[[int], None]) -> None:
    anns = []
    for ann in renderer.render(config_file, spec.seed, start, n, out):
        anns.append(ann)
        report(1)
    _write_part(spec, out, k, anns)


def _write_part(spec: DatasetSpec, out: Path, k: int, anns: list[dict]) -> None:
    (out / ".parts").mkdir(exist_ok=True)
    write_atomic(out / spec.part_file(k), "".join(json.dumps(a) + "\n" for a in anns))


def _build_shard(spec: DatasetSpec, config_file: Path, out: Path, k: int, start: int, n: int,
                 report: Callable[[int], None]) -> None:
    import tensorflow as tf  # only TFRecord output needs TensorFlow

    from kdetect.data.tfrecord import encode_example

    scratch = out / ".tmp" / f"chunk-{k:05d}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    final = out / spec.chunk_file(k)
    tmp = final.with_name(final.name + ".tmp")
    anns = []
    with tf.io.TFRecordWriter(str(tmp)) as writer:
        for ann in renderer.render(config_file, spec.seed, start, n, scratch):
            image = scratch / ann["file"]
            writer.write(encode_example(image.read_bytes(), ann))
            image.unlink()
            anns.append(ann)
            report(1)
    # The annotations first: the shard's rename is what marks the chunk finished.
    _write_part(spec, out, k, anns)
    os.replace(tmp, final)
    shutil.rmtree(scratch, ignore_errors=True)


def _finish(spec: DatasetSpec, out: Path) -> dict:
    manifest = json.loads((out / SETTINGS).read_text())
    manifest["format"] = "tfrecord" if spec.tfrecord else "images"
    manifest["fonts"] = json.loads((out / "fonts.json").read_text())
    anns = [json.loads(line) for k, _, _ in spec.chunks for line in (out / spec.part_file(k)).open()]
    write_atomic(out / "annotations.jsonl", "".join(json.dumps(a) + "\n" for a in anns))
    if spec.tfrecord:
        manifest["shards"] = [{"file": spec.chunk_file(k), "count": n, "bytes": (out / spec.chunk_file(k)).stat().st_size}
                              for k, _, n in spec.chunks]
        shutil.rmtree(out / ".tmp", ignore_errors=True)
    else:
        write_atomic(out / "labels.tsv", "".join(f"{a['file']}\t{a['text']}\n" for a in anns))
    manifest["images"] = spec.count
    manifest["lengths"] = {str(k): v for k, v in sorted(Counter(len(a["text"]) for a in anns).items())}
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
