"""The shipped model's rebuild chain: complete, started only from released packages named by
version and digest, and runnable end to end on a tiny budget."""

import json
import subprocess
from pathlib import Path

import pytest

from kdetect.errors import ConfigError
from kdetect.training.rebuild import Chain, mutable_starts, rebuild, run_configs
from kdetect.training.releases import REPO, fetch_release, is_release, package_digest, parse_reference, registry

CHAIN = REPO / "configs" / "rebuild" / "default.json"
SHARED_FONTS = REPO.parent / "shared" / "kcaptcha-fonts"


def full_history() -> bool:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--is-shallow-repository"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return out.strip() == "false"


needs_history = pytest.mark.skipif(not full_history(), reason="releases are read from git history: needs a full clone")


def test_the_shipped_chain_starts_only_from_releases_it_lists():
    chain = Chain.load(CHAIN)
    assert mutable_starts(chain) == []
    table = registry()
    # Each run starts from a release or from an earlier step's output (mutable_starts); the
    # releases are in the registry with the digest the configs give.
    releases = [c.init_from for c in run_configs(chain).values() if is_release(c.init_from)]
    assert releases
    for ref in releases:
        name, version, digest = parse_reference(ref)
        assert table[name][version]["sha256"] == digest
    assert Chain.load(CHAIN).steps[-1].out == chain.result


def test_a_run_that_continues_a_folder_is_refused(tmp_path: Path):
    config = json.loads((REPO / "configs/train/wide-46.json").read_text())
    config["init_from"] = "kdetect/models/default"
    (tmp_path / "run.json").write_text(json.dumps(config))
    chain = Chain.from_dict({"name": "t", "result": "runs/x", "steps": [{"do": "train", "config": str(tmp_path / "run.json")}]})
    assert mutable_starts(chain) == [f"{tmp_path / 'run.json'}: init_from kdetect/models/default"]
    with pytest.raises(ConfigError, match="release reference"):
        rebuild(chain, tmp_path, tiny=True)


def test_a_glyph_run_may_keep_a_released_detector_but_not_a_folder(tmp_path: Path):
    release = next(tc.init_from for tc in run_configs(Chain.load(CHAIN)).values() if is_release(tc.init_from))
    config = json.loads((REPO / "configs/train/glyphs-54.json").read_text())
    for name, detector in (("kept", release), ("folder", "kdetect/models/default")):
        (tmp_path / f"{name}.json").write_text(json.dumps({**config, "detector": detector}))
    chain = Chain.from_dict({"name": "t", "result": "runs/x", "steps": [
        {"do": "train-glyphs", "config": str(tmp_path / "kept.json")},
        {"do": "train-glyphs", "config": str(tmp_path / "folder.json")}]})
    assert mutable_starts(chain) == [f"{tmp_path / 'folder.json'}: detector kdetect/models/default"]


def test_a_step_is_checked_when_the_chain_is_read():
    with pytest.raises(ConfigError, match="a compact step needs"):
        Chain.from_dict({"name": "t", "result": "r", "steps": [{"do": "compact", "out": "r"}]})
    with pytest.raises(ConfigError, match="not 'bake'"):
        Chain.from_dict({"name": "t", "result": "r", "steps": [{"do": "bake"}]})


@needs_history
def test_a_release_is_read_from_history_and_checked_against_its_digest(tmp_path: Path):
    table = registry()
    name, versions = next(iter(table.items()))
    version, entry = next(iter(versions.items()))
    ref = f"{name}@{version}#sha256:{entry['sha256']}"
    folder = fetch_release(ref, tmp_path)
    assert package_digest(folder) == entry["sha256"]
    assert (folder / "config.json").is_file()
    wrong = ref[:-1] + ("0" if ref[-1] != "0" else "1")
    with pytest.raises(ConfigError, match="does not match configs/releases.json"):
        fetch_release(wrong, tmp_path / "other")
    # A registry whose digest the committed files do not have: refused, and nothing left behind.
    forged = {name: {version: {**entry, "sha256": wrong.rsplit(":", 1)[1]}}}
    with pytest.raises(ConfigError, match="has the digest"):
        fetch_release(wrong, tmp_path / "forged", forged)
    assert not (tmp_path / "forged" / f"{name}@{version}").exists()
    with pytest.raises(ConfigError, match="no release"):
        fetch_release(f"{name}@0.0.0#sha256:{entry['sha256']}", tmp_path)


@pytest.mark.slow
@needs_history
@pytest.mark.skipif(not SHARED_FONTS.is_dir(), reason="the chain draws with KCAPTCHA's fonts (../shared)")
def test_the_chain_runs_end_to_end_on_a_tiny_budget(tmp_path: Path):
    from kdetect.serving.solver import Solver

    package = rebuild(Chain.load(CHAIN), tmp_path, tiny=True)
    assert package == tmp_path / Chain.load(CHAIN).result
    assert {"config.json", "detector.weights.h5", "glyphs.json", "glyphs.weights.h5"} <= {p.name for p in package.iterdir()}
    training = json.loads((package / "training.json").read_text())
    # The package's record names every release the chain starts from: the detector's lineage (a
    # trained detector's first ancestor, or a released detector's own) and the glyph reader's
    # start and detector (the release's own history goes on further back).
    recorded = {training["init_from"]["package"], training["glyph_reader"].get("init_from"),
                training["glyph_reader"].get("detector")}
    runs = run_configs(Chain.load(CHAIN)).values()
    starts = {ref for tc in runs for ref in (tc.init_from, getattr(tc, "detector", None)) if is_release(ref)}
    assert starts and starts <= recorded, (starts, recorded)
    # The package loads and reads, both stages, in the TFLite runtime a user's solve runs.
    import numpy as np

    reading = Solver(package).read(np.full((50, 160, 3), 255, np.uint8))
    assert len(reading.glyphs) == len(reading.text)


def test_the_shipped_model_cards_name_files_that_exist():
    import re

    for card in (REPO / "kdetect" / "models").glob("*/MODEL_CARD.md"):
        named = {m.rstrip(".,;:)`") for m in re.findall(r"kdetect/[\w/.-]+", card.read_text())}
        assert named, card
        assert [n for n in sorted(named) if not (REPO / n).exists()] == [], card
