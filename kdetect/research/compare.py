"""The detector against the fixed-length classifier baseline, side by side, measured in one run.

Both models read the same fresh synthetic captchas of every preset and ../shared/realval; the
baseline reads only its one answer length, and the per-length table shows that rather than
hiding it. Learning curves train both from scratch on the first 1k, 5k, 20k and 50k images of
the same TFRecords, with the same budget, and record when each first reached 99% on the held-out
set. Results go to a JSON file; kdetect/research/report.py turns them into docs/comparison.md and plots.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdetect.configio import JsonConfig
from kdetect.errors import ConfigError
from kdetect.package import read_training
from kdetect.presets import ENGINE_PRESETS, realval_dir


@dataclass(frozen=True)
class CompareConfig(JsonConfig):
    what = "comparison config"

    detector: str | None = None  # a detector package; None: the shipped default model
    baseline: str | None = None  # a classifier package; None: the shipped baseline-l2
    test_count: int = 500  # fresh synthetic images per preset
    test_seed: int = 9001
    realval: str | None = None  # None: kdetect.presets.realval_dir(); skipped where absent
    latency_repeats: int = 100
    # Learning curves: training configs (JSON paths) run once per size with train_images = size.
    curve_sizes: tuple[int, ...] = (1000, 5000, 20000, 50000)
    # A relative path is looked up beside the comparison config first (load_compare_config).
    curve_detector: str | None = "curve-detector.json"
    curve_baseline: str | None = "curve-baseline.json"
    out_dir: str = "runs/compare"  # test images, curve runs, results.json

    @classmethod
    def convert(cls, data: dict) -> dict:
        if "curve_sizes" in data:
            data["curve_sizes"] = tuple(int(n) for n in data["curve_sizes"])
        return data

    def validate(self) -> None:
        if self.test_count < 1 or self.latency_repeats < 1 or any(n < 1 for n in self.curve_sizes):
            raise ConfigError("test_count, latency_repeats and every curve size must be at least 1")


def default_compare_config() -> Path:
    """The shipped comparison config, wherever kdetect runs from."""
    from kdetect.data.renderer import resource_dir

    return resource_dir("configs") / "compare" / "default.json"


def load_compare_config(path: str | Path) -> CompareConfig:
    """A comparison config, its relative curve configs found beside it where they are there
    (else they stay relative to the working folder, as older configs wrote them)."""
    cc = CompareConfig.load(path)
    beside = {}
    for name in ("curve_detector", "curve_baseline"):
        value = getattr(cc, name)
        if value and not Path(value).is_absolute() and (Path(path).parent / value).is_file():
            beside[name] = str(Path(path).parent / value)
    return dataclasses.replace(cc, **beside)


def package_facts(model_dir: Path) -> dict:
    """Parameters and bytes on disk of a package of either kind."""
    from kdetect.package import load_any_package, load_glyph_reader

    network, _ = load_any_package(model_dir)
    glyphs = load_glyph_reader(model_dir)  # a second stage counts with its detector
    parameters = network.count_params() + (glyphs[0].count_params() if glyphs else 0)
    size = sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file())
    return {"parameters": int(parameters), "bytes": size}


def comparison_sets(cc: CompareConfig) -> dict[str, dict[str, Path]]:
    """{"synthetic": {preset: folder}, "realval": {preset: folder}}; synthetic made once and kept."""
    from kdetect.data import renderer
    from kdetect.data.generate import DatasetSpec, generate

    synthetic = {}
    for preset in ENGINE_PRESETS:
        folder = Path(cc.out_dir) / "test" / preset
        if not (folder / "manifest.json").is_file():
            spec = DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=cc.test_seed,
                               count=cc.test_count)
            generate(spec, folder)
        synthetic[preset] = folder
    sets = {"synthetic": synthetic}
    real = Path(cc.realval) if cc.realval else realval_dir()
    if real.is_dir():
        sets["realval"] = {p: real / p for p in ENGINE_PRESETS if (real / p / "labels.tsv").is_file()}
    return sets


def latency_ms(solver, image: Path, repeats: int) -> float:
    """Median milliseconds of one single-image read, after warm-up."""
    for _ in range(5):
        solver.read(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        solver.read(image)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(model_dir: Path, sets: dict, repeats: int) -> dict:
    """Accuracy per set and preset (with by-length detail), size, parameters and latency."""
    from kdetect.serving.evaluate import evaluate
    from kdetect.serving.solver import Solver

    solver = Solver(model_dir)
    result = {"model": str(model_dir), **package_facts(model_dir), "accuracy": {}}
    for set_name, folders in sets.items():
        result["accuracy"][set_name] = {}
        for preset, folder in folders.items():
            r = evaluate(solver, folder)
            result["accuracy"][set_name][preset] = {"accuracy": r["accuracy"], "images": r["images"],
                                                    "by_length": r["by_length"]}
    image = next(iter(sets["synthetic"].values())) / "0000000.jpg"
    result["latency_ms"] = latency_ms(solver, image, repeats)
    return result


def time_to(history: list[dict], target: float, images_per_epoch: int) -> dict | None:
    """The first epoch reaching target: training images seen and seconds, or None."""
    for h in history:
        if h["val_string_acc"] >= target:
            return {"epoch": h["epoch"], "images_seen": h["epoch"] * images_per_epoch, "seconds": h["seconds"]}
    return None


def curve_run(kind: str, config_path: str, size: int, out_root: Path, log: Callable[[str], None]) -> dict:
    """Train one model of `kind` on the first `size` images (resuming, or reusing a finished run)."""
    from kdetect.training.loop import HISTORY, read_history

    if kind == "detector":
        from kdetect.training.detector import TrainConfig as Config
        from kdetect.training.detector import train as run
    else:
        from kdetect.training.classifier import ClassifierTrainConfig as Config
        from kdetect.training.classifier import train_classifier as run
    tc = dataclasses.replace(Config.load(config_path), train_images=size, out_dir=str(out_root / f"{kind}-{size}"))
    out = Path(tc.out_dir)
    summary = read_training(out / "model")
    if summary is None:
        log(f"curve: training the {kind} on {size} images")
        run(tc, log=log, verbose=0)
        summary = read_training(out / "model")
    history = read_history(out / HISTORY)
    return {"kind": kind, "train_images": size, "val_string_accuracy": summary["val_string_accuracy"],
            "epochs": len(history), "seconds": history[-1]["seconds"] if history else None,
            "to_99": time_to(history, 0.99, tc.steps_per_epoch * tc.batch_size), "model": str(out / "model"),
            "budget_images": tc.epochs * tc.steps_per_epoch * tc.batch_size}


def run_comparison(cc: CompareConfig, log: Callable[[str], None] = lambda s: None) -> dict:
    """Everything the report shows, also written to out_dir/results.json."""
    from kdetect.package import default_model_dir

    out = Path(cc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    detector = Path(cc.detector) if cc.detector else default_model_dir()
    baseline = Path(cc.baseline) if cc.baseline else default_model_dir().parent / "baseline-l2"
    sets = comparison_sets(cc)
    log("measuring the detector")
    results = {"config": dataclasses.asdict(cc), "detector": measure(detector, sets, cc.latency_repeats)}
    log("measuring the baseline")
    results["baseline"] = measure(baseline, sets, cc.latency_repeats)
    results["curve"] = []
    for size in cc.curve_sizes:
        for kind, config in (("detector", cc.curve_detector), ("classifier", cc.curve_baseline)):
            if config:
                results["curve"].append(curve_run(kind, config, size, out / "curve", log))
    from kdetect.fsutil import write_atomic

    write_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results
