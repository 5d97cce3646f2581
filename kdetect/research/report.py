"""docs/comparison.md and its plots, from the results of kdetect/research/compare.py."""

from __future__ import annotations

from pathlib import Path

from kdetect.fsutil import write_atomic
from kdetect.presets import ENGINE_PRESETS

NAMES = {"detector": "detector (YOLOv3-tiny)", "baseline": "baseline (fixed-length classifier)"}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _accuracy(result: dict, set_name: str, preset: str) -> float | None:
    entry = result["accuracy"].get(set_name, {}).get(preset)
    return None if entry is None else entry["accuracy"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def plot_presets(results: dict, path: Path) -> None:
    sets = list(results["detector"]["accuracy"])
    fig, axes = _pyplot().subplots(1, len(sets), figsize=(5 * len(sets), 3.6), squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        for k, model in enumerate(("detector", "baseline")):
            values = [100 * (_accuracy(results[model], set_name, p) or 0) for p in ENGINE_PRESETS]
            ax.bar([i + (k - 0.5) * 0.38 for i in range(len(ENGINE_PRESETS))], values, 0.38, label=NAMES[model])
        ax.set_xticks(range(len(ENGINE_PRESETS)), ENGINE_PRESETS)
        ax.set_ylim(0, 100)
        ax.set_title(f"full-string accuracy, {set_name}")
        ax.set_ylabel("%")
    axes[0][0].legend(loc="lower left", fontsize=8)
    _save(fig, path)


def plot_lengths(results: dict, path: Path) -> None:
    fig, ax = _pyplot().subplots(figsize=(6, 3.6))
    for model in ("detector", "baseline"):
        for set_name, style in (("synthetic", "-o"), ("realval", "--s")):
            by_length = results[model]["accuracy"].get(set_name, {}).get("varlen", {}).get("by_length")
            if by_length:
                lengths = sorted(by_length, key=int)
                ax.plot([int(n) for n in lengths], [100 * by_length[n]["accuracy"] for n in lengths], style,
                        label=f"{NAMES[model]}, {set_name}")
    ax.set_xlabel("answer length (varlen preset)")
    ax.set_ylabel("full-string accuracy %")
    ax.set_ylim(-2, 102)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_curve(results: dict, path: Path) -> None:
    fig, ax = _pyplot().subplots(figsize=(6, 3.6))
    for kind in ("detector", "classifier"):
        runs = sorted((r for r in results["curve"] if r["kind"] == kind), key=lambda r: r["train_images"])
        if runs:
            ax.plot([r["train_images"] for r in runs], [100 * r["val_string_accuracy"] for r in runs], "-o",
                    label=NAMES["detector" if kind == "detector" else "baseline"])
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel("held-out full-string accuracy %")
    ax.legend(fontsize=8)
    _save(fig, path)


def _budget(curve: list[dict]) -> str:
    budgets = {r.get("budget_images") for r in curve} - {None}
    return f" of {budgets.pop():,} training images seen (repeating small sets)" if len(budgets) == 1 else ""


def markdown(results: dict, command: str) -> str:
    d, b = results["detector"], results["baseline"]
    lines = ["# The detector against the fixed-length classifier", "",
             f"Produced by `{command}`; every number below comes from that one run.", "",
             "## Full-string accuracy", "", "![accuracy by preset](comparison/presets.png)", "",
             "| set | preset | detector | baseline |", "|---|---|---|---|"]
    for set_name in d["accuracy"]:
        for preset in ENGINE_PRESETS:
            if preset in d["accuracy"][set_name]:
                n = d["accuracy"][set_name][preset]["images"]
                lines.append(f"| {set_name} ({n}) | {preset} | {_pct(_accuracy(d, set_name, preset))} | "
                             f"{_pct(_accuracy(b, set_name, preset))} |")
    lines += ["", "## By answer length (varlen)", "",
              "The baseline reads exactly one length; every other length is wrong by construction.", "",
              "![accuracy by length](comparison/lengths.png)", "", "| set | length | detector | baseline |",
              "|---|---|---|---|"]
    for set_name in d["accuracy"]:
        dl = d["accuracy"][set_name].get("varlen", {}).get("by_length", {})
        bl = b["accuracy"][set_name].get("varlen", {}).get("by_length", {})
        for n in sorted(dl, key=int):
            lines.append(f"| {set_name} | {n} | {_pct(dl[n]['accuracy'])} | {_pct(bl.get(n, {}).get('accuracy'))} |")
    lines += ["", "## Size and speed", "", "| | detector | baseline |", "|---|---|---|",
              f"| parameters | {d['parameters']:,} | {b['parameters']:,} |",
              f"| package on disk | {d['bytes'] / 1e6:.2f} MB | {b['bytes'] / 1e6:.2f} MB |",
              f"| single-image latency (median, this machine) | {d['latency_ms']:.1f} ms | {b['latency_ms']:.1f} ms |"]
    if results["curve"]:
        lines += ["", "## Training data and time", "",
                  "Both trained from scratch on the first N images of the same TFRecords with the same budget"
                  + _budget(results["curve"]) + ";",
                  "'to 99%' is the first epoch whose held-out full-string accuracy reached 99%. The final",
                  "accuracy is the packaged model's: the detector's score and NMS thresholds are tuned on that",
                  "held-out set when it is packaged, which the per-epoch figures are not.", "",
                  "![learning curve](comparison/curve.png)", "",
                  "| model | training images | held-out accuracy | epochs | training time | to 99%: images seen, time |",
                  "|---|---|---|---|---|---|"]
        for r in sorted(results["curve"], key=lambda r: (r["kind"], r["train_images"])):
            to = r["to_99"]
            reached = f"{to['images_seen']:,}, {to['seconds'] / 60:.1f} min" if to else "not reached"
            seconds = f"{r['seconds'] / 60:.1f} min" if r["seconds"] is not None else "–"
            lines.append(f"| {r['kind']} | {r['train_images']:,} | {_pct(r['val_string_accuracy'])} | {r['epochs']} | "
                         f"{seconds} | {reached} |")
    return "\n".join(lines) + "\n"


def write_report(results: dict, docs_dir: str | Path, command: str) -> Path:
    """docs_dir/comparison.md and docs_dir/comparison/*.png."""
    docs = Path(docs_dir)
    (docs / "comparison").mkdir(parents=True, exist_ok=True)
    plot_presets(results, docs / "comparison" / "presets.png")
    plot_lengths(results, docs / "comparison" / "lengths.png")
    if results["curve"]:
        plot_curve(results, docs / "comparison" / "curve.png")
    write_atomic(docs / "comparison.md", markdown(results, command))
    return docs / "comparison.md"
