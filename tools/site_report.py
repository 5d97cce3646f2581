#!/usr/bin/env python3
"""How well `kdetect adapt` inferred a site's render config: its site.json against the truth.

    python tools/site_report.py runs/d1/site.json ../shared/sites/d1-blue-sans/site.json [more pairs ...]

The truth is shared/sites' format (engine, symbols, len, fluct, white, black, fg, bg, ...). Prints
one Markdown table per pair and the share of settings inferred right.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# What each engine draws where site.json leaves a setting out (shared/kcaptcha-algorithm.md).
ENGINE_DEFAULTS = {
    "k21": {"symbols": "23456789abcdegikpqsvxyz", "fluct": 8, "white": 1 / 6, "black": 1 / 30, "no_spaces": True,
            "wave": True, "fg": [[0, 80]] * 3, "bg": [[220, 255]] * 3, "width": 160, "height": 80},
    "g5": {"symbols": "0123456789", "fluct": 5, "white": 1 / 6, "black": 1 / 20, "no_spaces": False, "wave": True,
           "width": 160, "height": 60},
}
# KCAPTCHA's random colours ("colors": true) where the engine has no fixed ink and paper.
RANDOM_COLOURS = {"fg": [[0, 100]] * 3, "bg": [[200, 255]] * 3}


def truth_settings(truth: dict) -> dict:
    engine = truth.get("engine", "g5")
    flat = {**ENGINE_DEFAULTS[engine], **truth, **truth.get("config", {})}
    renamed = {"fluctuation_amplitude": "fluct", "white_noise_density": "white", "black_noise_density": "black"}
    for long, short in renamed.items():
        if long in flat:
            flat[short] = flat.pop(long)
    if engine == "g5" and flat.get("colors"):
        flat.update(RANDOM_COLOURS)
    lo, hi = flat["len"] if isinstance(flat["len"], list) else (flat["len"], flat["len"])
    return {"canvas": f"{flat['width']}x{flat['height']}", "alphabet": flat["symbols"], "length": f"{lo}-{hi}",
            "ink": flat["fg"], "paper": flat["bg"], "fluctuation": flat["fluct"], "white noise": round(flat["white"], 3),
            "black noise": round(flat["black"], 3), "no_spaces": flat["no_spaces"], "wave": flat["wave"],
            "jpeg quality": 90}


def inferred_settings(site: dict) -> dict:
    length = site["length"] if isinstance(site["length"], list) else [site["length"]] * 2
    return {"canvas": f"{site['width']}x{site['height']}", "alphabet": site["allowed_symbols"],
            "length": f"{length[0]}-{length[1]}", "ink": site["foreground_color"], "paper": site["background_color"],
            "fluctuation": site["fluctuation_amplitude"], "white noise": round(site["white_noise_density"], 3),
            "black noise": round(site["black_noise_density"], 3), "no_spaces": site["no_spaces"],
            "wave": site.get("wave", True), "jpeg quality": site.get("jpeg_quality")}


def right(name: str, got, truth) -> bool:
    """Exact for what is exact; near for what synthesis or colour sampling can only approach."""
    if name in ("ink", "paper"):
        return all(abs(g - t) <= 10 for gc, tc in zip(got, truth) for g, t in zip(gc, tc))
    if name == "fluctuation":
        return abs(got - truth) <= 1
    if name in ("white noise", "black noise"):
        return abs(got - truth) <= max(0.015, 0.25 * truth)
    return got == truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", type=Path, help="inferred site.json, truth site.json, ...")
    args = ap.parse_args()
    if len(args.pairs) % 2:
        ap.error("give the files in pairs: inferred site.json, then the truth")
    total = hits = 0
    for inferred_path, truth_path in zip(args.pairs[::2], args.pairs[1::2]):
        got = inferred_settings(json.loads(inferred_path.read_text()))
        truth = truth_settings(json.loads(truth_path.read_text()))
        print(f"\n### {truth_path.parent.name}\n\n| setting | inferred | truth | right |\n|---|---|---|---|")
        for name in truth:
            ok = right(name, got[name], truth[name])
            total, hits = total + 1, hits + ok
            print(f"| {name} | {got[name]} | {truth[name]} | {'yes' if ok else 'no'} |")
    print(f"\n{hits} of {total} settings right")


if __name__ == "__main__":
    main()
