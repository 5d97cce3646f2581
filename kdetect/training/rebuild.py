"""Rebuild a shipped model from the repository: a chain of steps (generate, train, train-glyphs,
compact) read from one JSON file, whose runs start from released packages named by version and
digest (kdetect/training/releases.py), never from a folder whose content changes.

Paths a step writes, or reads from an earlier step, are relative to a work folder (the
repository by default); inputs (run configs, font folders) are relative to the repository. A
tiny budget runs every step for a few images and steps: a check that the chain is complete and
runs end to end, not a model to use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdetect.configio import JsonConfig
from kdetect.errors import ConfigError
from kdetect.training.releases import REPO, is_release, parse_reference

ACTIONS = {"generate": ("preset", "count", "seed", "out"), "train": ("config",), "train-glyphs": ("config",),
           "compact": ("model", "out")}
# The tiny budget: enough to pass through every line of every step.
TINY_IMAGES = 48
TINY_RUN = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "warmup_steps": 0, "val_images": 16, "patience": 1}


@dataclass(frozen=True)
class Step(JsonConfig):
    what = "rebuild step"

    do: str  # one of ACTIONS
    config: str | None = None  # train, train-glyphs: the run's config file
    preset: str | None = None  # generate
    count: int | None = None
    seed: int | None = None
    fonts: tuple[str, ...] = ()  # generate: font folders, each image draws one first
    model: str | None = None  # compact: the package to compact
    out: str | None = None  # generate, compact

    @classmethod
    def convert(cls, data: dict) -> dict:
        data["fonts"] = tuple(data.get("fonts", ()))
        return data

    def validate(self) -> None:
        if self.do not in ACTIONS:
            raise ConfigError(f"a rebuild step does one of {sorted(ACTIONS)}, not {self.do!r}")
        missing = [name for name in ACTIONS[self.do] if getattr(self, name) is None]
        if missing:
            raise ConfigError(f"a {self.do} step needs {missing}")


@dataclass(frozen=True)
class Chain(JsonConfig):
    what = "rebuild chain"

    name: str
    steps: tuple[Step, ...]
    result: str  # the package the last step leaves, relative to the work folder

    @classmethod
    def convert(cls, data: dict) -> dict:
        if not isinstance(data["steps"], list) or not data["steps"]:
            raise ConfigError("steps must be a list of at least one step")
        data["steps"] = tuple(Step.from_dict(s) for s in data["steps"])
        return data


# What a run starts from: a release reference, or an earlier step's output rooted in the work folder.
STARTS = ("init_from", "detector")


def run_configs(chain: Chain) -> dict[int, JsonConfig]:
    """The run config of every train and train-glyphs step, by step number, loaded (and so checked)."""
    from kdetect.training.detector import TrainConfig
    from kdetect.training.glyphs import GlyphTrainConfig

    kinds = {"train": TrainConfig, "train-glyphs": GlyphTrainConfig}
    return {n: kinds[s.do].load(REPO / s.config) for n, s in enumerate(chain.steps) if s.do in kinds}


def mutable_starts(chain: Chain) -> list[str]:
    """What a run of the chain starts from that is neither a release reference nor an earlier
    step's output: each a start whose content can change under the chain. Empty for a sound chain."""
    configs, made, bad = run_configs(chain), set(), []
    for n, step in enumerate(chain.steps):
        tc = configs.get(n)
        if tc is None:
            made.add(step.out)
            continue
        for start in STARTS:
            ref = getattr(tc, start, None)
            if is_release(ref):
                parse_reference(ref)
            elif ref and ref not in made:
                bad.append(f"{step.config}: {start} {ref}")
        made |= {tc.out_dir, f"{tc.out_dir}/model"}
    return bad


def _rooted(work: Path, path: str | None) -> str | None:
    return None if path is None or Path(path).is_absolute() else str(work / path)


def _generate(step: Step, work: Path, tiny: bool) -> None:
    from kdetect.data import renderer
    from kdetect.data.generate import DatasetSpec, generate

    config = renderer.load_config(renderer.preset_path(step.preset))
    if step.fonts:
        config = renderer.with_fonts(config, [REPO / f for f in step.fonts])
    count = min(step.count, TINY_IMAGES) if tiny else step.count
    spec = DatasetSpec(config=config, seed=step.seed, count=count, tfrecord=True, preset=step.preset)
    generate(spec, _rooted(work, step.out), source=f"preset {step.preset}")


def _run(step: Step, tc: JsonConfig, work: Path, tiny: bool, force: bool, log: Callable[[str], None]) -> None:
    paths = {name: _rooted(work, getattr(tc, name)) for name in ("train_data", "val_data", "out_dir")}
    for start in STARTS:
        value = getattr(tc, start, None)
        if value and not is_release(value):
            paths[start] = _rooted(work, value)
    tc = dataclasses.replace(tc, **paths, **(TINY_RUN if tiny else {}))
    if step.do == "train":
        from kdetect.training.detector import train

        train(tc, log=log, verbose=0 if tiny else 2, force=force)
    else:
        from kdetect.training.glyphs import train_glyphs

        train_glyphs(tc, log=log, verbose=0 if tiny else 2, force=force)


def rebuild(chain: Chain, work: str | Path = REPO, tiny: bool = False, force: bool = False,
            log: Callable[[str], None] = lambda s: None) -> Path:
    """Run every step of the chain (each resumes what an interrupted rebuild left); -> the package."""
    bad = mutable_starts(chain)
    if bad:
        raise ConfigError(f"{chain.name}: runs that start from a folder whose content can change ({'; '.join(bad)}); "
                          "start from a release reference (configs/releases.json) or an earlier step's output")
    work, configs = Path(work), run_configs(chain)
    for n, step in enumerate(chain.steps):
        log(f"step {n + 1}/{len(chain.steps)}: {step.do} {step.config or step.out}")
        if step.do == "generate":
            _generate(step, work, tiny)
        elif step.do == "compact":
            from kdetect.training.compact import compact_package

            compact_package(_rooted(work, step.model), _rooted(work, step.out), force=force)
        else:
            _run(step, configs[n], work, tiny, force, log)
    return work / chain.result
