"""The `kdetect` command: a thin shell over the library."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from kdetect.errors import ConfigError, KdetectError
from kdetect.extras import TRAIN, require
from kdetect.presets import ENGINE_PRESETS, TRAINING_PRESET
from kdetect.quiet import native_stderr_held, quiet_environment, start_tensorflow_quietly

# The commands that need TensorFlow (the train extra); reading (solve, eval, serve) runs the
# package's TFLite files without it, unless --backend tf.
TENSORFLOW_COMMANDS = {"train", "finetune", "adapt", "train-classifier", "train-glyphs", "export", "demo", "compact",
                       "soup", "compare", "rebuild"}
FORCE_HELP = ("replace the output folder even where it holds files kdetect did not write (without it, such a "
              "folder is refused and left as it is)")


def main(argv: list[str] | None = None) -> int:
    quiet_environment()  # before TensorFlow loads: its start-up chatter would hide kdetect's output
    parser = argparse.ArgumentParser(prog="kdetect", description="Read KCAPTCHA-family captchas.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_show(sub)
    _add_solve(sub)
    _add_eval(sub)
    _add_train(sub)
    _add_finetune(sub)
    _add_adapt(sub)
    _add_train_classifier(sub)
    _add_train_glyphs(sub)
    _add_export(sub)
    _add_demo(sub)
    _add_web(sub)
    _add_compact(sub)
    _add_rebuild(sub)
    _add_soup(sub)
    _add_compare(sub)
    _add_serve(sub)
    args = parser.parse_args(argv)
    # load_image refuses such images itself, naming its own limit; PIL's warning would only repeat it.
    warnings.filterwarnings("ignore", message="Image size .* could be decompression bomb")
    try:
        needs = {"--tfrecord": getattr(args, "tfrecord", False), "--backend tf": getattr(args, "backend", "") == "tf"}
        if args.command in TENSORFLOW_COMMANDS or any(needs.values()):
            option = "".join(f" {name}" for name, given in needs.items() if given)
            require("tensorflow", TRAIN, f"kdetect {args.command}{option}")
            start_tensorflow_quietly()
        return args.run(args) or 0
    except KdetectError as err:
        print(f"kdetect: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:
        # What the system refused (a full disk, a folder without write permission): its own words
        # say it, a traceback would only bury them.
        print(f"kdetect: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdetect: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def one_line(text: str) -> str:
    """text with backslashes, tabs and line breaks escaped (a file name may hold any of them), so
    that it stays one line and one field of tab-separated output."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="render captchas with exact glyph boxes")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help=f"a preset from configs/ ({', '.join((*ENGINE_PRESETS, TRAINING_PRESET))})")
    src.add_argument("--config", type=Path, help="a JSON render config")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=None, help="PHP workers (default: all cores)")
    p.add_argument("--tfrecord", action="store_true", help="write sharded TFRecords instead of image files")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--fonts", type=Path, nargs="+",
                   help="folders of font strips to draw with instead of the config's: KCAPTCHA's own (a Gnuboard "
                        "checkout's plugin/kcaptcha/fonts) or look-alikes (python tools/make_fonts.py --out DIR); "
                        "with several, each image draws a folder first, then a strip in it")
    p.set_defaults(run=_run_generate)


def _run_generate(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from kdetect.data import renderer
    from kdetect.data.generate import DatasetSpec, generate

    path = renderer.preset_path(args.preset) if args.preset else args.config
    config = renderer.load_config(path)
    if args.fonts:
        config = renderer.with_fonts(config, args.fonts)
    spec = DatasetSpec(config=config, seed=args.seed, count=args.count,
                       tfrecord=args.tfrecord, shard_size=args.shard_size, preset=args.preset)
    with tqdm(total=args.count, unit="img", desc="generate") as bar:
        source = str(path) + (" with --fonts " + " ".join(map(str, args.fonts)) if args.fonts else "")
        manifest = generate(spec, args.out, workers=args.workers, progress=bar.update, source=source)
    lengths = ", ".join(f"{k}: {v}" for k, v in manifest["lengths"].items())
    print(f"wrote {manifest['images']} images to {args.out} ({manifest['format']}; lengths {lengths})")


def _add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="draw a grid of samples with their boxes and texts")
    p.add_argument("data", type=Path, help="a generated dataset, or a folder of images with labels.tsv")
    p.add_argument("--out", type=Path, default=Path("grid.png"))
    p.add_argument("--count", type=int, default=24)
    p.add_argument("--columns", type=int, default=4)
    p.add_argument("--scale", type=int, default=2)
    p.set_defaults(run=_run_show)


def _run_show(args: argparse.Namespace) -> None:
    from kdetect.data.show import load_samples, save_grid

    samples = load_samples(args.data, args.count)
    save_grid(samples, args.out, columns=args.columns, scale=args.scale)
    print(f"wrote {args.out} ({len(samples)} samples)")


def _add_backend(p: argparse.ArgumentParser) -> None:
    from kdetect.serving.reader import BACKENDS

    p.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0],
                   help="run the network with TensorFlow Lite (default, faster on CPUs) or as a TensorFlow graph")


def _add_symbols(p: argparse.ArgumentParser) -> None:
    p.add_argument("--symbols", help="characters the captchas are known to use, e.g. 0123456789 for Gnuboard; others are never read")
    p.add_argument("--no-alphabet-guess", dest="alphabet_guess", action="store_false",
                   help="without --symbols, let every character win on its own instead of reading each captcha "
                        "with the training alphabet its glyphs point to")
    p.add_argument("--length", type=int, help="the one answer length the site uses, e.g. 6 for Gnuboard 5: read "
                                              "exactly that many glyphs where the model can")


def _add_solve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("solve", help="read captcha images; prints `file<TAB>answer` lines (backslashes, tabs and "
                                     "line breaks in a file name written as \\\\, \\t, \\n and \\r)")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON object per image, with glyph scores and boxes")
    p.add_argument("--draw", type=Path, help="write a PNG with the read glyph boxes drawn")
    p.add_argument("--model", type=Path, help="a model package folder (default: the shipped model)")
    _add_symbols(p)
    _add_backend(p)
    p.set_defaults(run=_run_solve)


def _loaded(solver):
    """The solver, loaded with the TFLite converter's and interpreter's C++ start-up logs held back."""
    with native_stderr_held():
        solver.load()
    return solver


def _run_solve(args: argparse.Namespace) -> int:
    import json

    from kdetect.errors import InvalidImageError
    from kdetect.images import load_image
    from kdetect.serving.solver import Solver

    solver = _loaded(Solver(args.model, args.symbols, args.backend, args.alphabet_guess, args.length))
    failed = 0
    drawn = []
    for path in args.images:
        try:
            image = load_image(path)
            reading = solver.read(image)
        except InvalidImageError as err:
            print(f"kdetect: {one_line(str(err))}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({"file": str(path), **reading.to_json()}))
        else:
            print(f"{one_line(str(path))}\t{reading.text}")
        if args.draw:
            drawn.append((image, reading))
    if args.draw and drawn:
        from PIL import Image

        from kdetect.data.show import Sample, save_grid

        samples = [Sample(Image.fromarray(a), r.text, [[*g.box, g.char] for g in r.glyphs if g.box is not None])
                   for a, r in drawn]
        save_grid(samples, args.draw, columns=min(4, len(samples)))
    return 1 if failed else 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy on a folder of images with labels.tsv")
    p.add_argument("folder", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON object; `accuracy` is full-string accuracy")
    p.add_argument("--model", type=Path, help="a model package folder (default: the shipped model)")
    _add_symbols(p)
    _add_backend(p)
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from kdetect.serving.evaluate import evaluate
    from kdetect.serving.solver import Solver

    solver = _loaded(Solver(args.model, args.symbols, args.backend, args.alphabet_guess, args.length))
    result = evaluate(solver, args.folder)
    for warning in result["warnings"]:
        print(f"kdetect: warning: {one_line(warning)}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.folder}: {result['images']} images")
    print(f"full-string accuracy {result['accuracy']:.4f}   per-character accuracy {result['char_accuracy']:.4f}")
    for length, r in result["by_length"].items():
        print(f"  length {length}: {r['accuracy']:.4f} of {r['images']}")
    if result["confused"]:
        print("most confused: " + ", ".join(f"{c['truth']}->{c['read']} x{c['count']}" for c in result["confused"]))
    for err in result["invalid"]:
        print(f"unreadable: {one_line(err)}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the detector from a training config (JSON); resumes after a kill")
    _add_training_overrides(p)
    p.add_argument("--devices", help="comma-separated devices for MirroredStrategy, e.g. /cpu:0,/cpu:1")
    p.add_argument("--package-best", type=Path, metavar="OUT",
                   help="do not train: package the run's best checkpoint so far into OUT (works while it runs)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    from kdetect.training.detector import TrainConfig, package_best, train

    tc = _overridden(TrainConfig.load(args.config), args)
    if args.package_best:
        summary = package_best(tc, args.package_best, force=args.force)
        print(f"model package: {args.package_best} (val full-string accuracy {summary['val_string_accuracy']:.4f})")
        return
    summary = train(tc, devices=args.devices.split(",") if args.devices else None, log=print, force=args.force)
    print(f"model package: {tc.out_dir}/model (val full-string accuracy {summary['val_string_accuracy']:.4f})")


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    from kdetect.training.finetune import FinetuneConfig

    d = FinetuneConfig()
    p = sub.add_parser("finetune", help="fine-tune a detector on labelled captchas (folders with labels.tsv); "
                                        "the detector itself places the glyph boxes")
    p.add_argument("folders", nargs="+", type=Path, help="folders of images with labels.tsv (`file<TAB>answer`)")
    p.add_argument("--out", type=Path, required=True, help="run folder; the model package goes to OUT/model")
    p.add_argument("--model", type=Path, help="detector package to start from (default: the shipped one)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of the labelled images held out to validate each epoch (default: {d.val_fraction})")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--augment", type=float, default=d.augment, help="fraction of training images augmented")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(run=_run_finetune)


def _run_finetune(args: argparse.Namespace) -> None:
    from kdetect.training.finetune import FinetuneConfig, finetune

    fc = FinetuneConfig(val_fraction=args.val_fraction, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                        batch_size=args.batch_size, learning_rate=args.learning_rate, augment=args.augment,
                        seed=args.seed)
    summary = finetune(args.model, args.folders, args.out, fc, log=print, force=args.force)
    print(f"model package: {args.out}/model (held-out full-string accuracy {summary['val_string_accuracy']:.4f}); "
          f"measure it with `kdetect eval --model {args.out}/model DIR` on captchas it never saw")


def _add_adapt(sub: argparse._SubParsersAction) -> None:
    from kdetect.training.adapt import AdaptConfig

    d = AdaptConfig()
    p = sub.add_parser("adapt", help="take kdetect to a new site: infer its KCAPTCHA config and fonts from labelled "
                                     "captchas, render matched ones, train both stages, self-train on unlabelled ones")
    p.add_argument("train", type=Path, help="the site's labelled captchas (a folder with labels.tsv)")
    p.add_argument("--unlabelled", type=Path, help="a folder of the same site's captchas without labels")
    p.add_argument("--out", type=Path, required=True, help="run folder; the package goes to OUT/model, the inferred "
                                                           "render config to OUT/site.json")
    p.add_argument("--model", type=Path, help="two-stage package to start from (default: the shipped one)")
    p.add_argument("--fonts", type=Path, nargs="*", default=[],
                   help="more folders of font strips to search, e.g. KCAPTCHA's own (plugin/kcaptcha/fonts)")
    p.add_argument("--config", type=Path, help="an adapt config (JSON) of the budgets and shares in AdaptConfig")
    p.add_argument("--synthetic", type=int, help=f"captchas rendered in the site's config (default: {d.synthetic})")
    p.add_argument("--seed", type=int)
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(run=_run_adapt)


def _run_adapt(args: argparse.Namespace) -> None:
    import dataclasses
    import time

    from tqdm import tqdm

    from kdetect.training.adapt import AdaptConfig, adapt

    ac = AdaptConfig.load(args.config) if args.config else AdaptConfig()
    ac = dataclasses.replace(ac, **{k: v for k, v in {"synthetic": args.synthetic, "seed": args.seed}.items()
                                    if v is not None})
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"adapt {stage}", leave=True)
        bar.total = max(total, done)
        bar.update(done - bar.n)

    def say(line: str) -> None:
        tqdm.write(f"{time.strftime('%H:%M:%S')} {line}")

    summary = adapt(args.train, args.out, args.unlabelled, ac, fonts=args.fonts, model_dir=args.model, log=say,
                    warn=lambda m: tqdm.write(f"kdetect: warning: {m}", file=sys.stderr),
                    progress=progress, force=args.force)
    for bar in bars.values():
        bar.close()
    print(f"fonts chosen: {', '.join(summary['fonts_chosen'])}")
    print(f"site config: {args.out}/site.json (real beside rendered: {args.out}/site.png)")
    print(f"held-out full-string accuracy {summary['held_out_accuracy']:.3f} on {summary['held_out']} labelled "
          f"captchas no training used; {summary['seconds'] / 60:.1f} minutes")
    print(f"model package: {args.out}/model; read with `kdetect solve --model {args.out}/model ...`")


def _add_training_overrides(p: argparse.ArgumentParser) -> None:
    """A training command's config file, and what the command line may put over it (_overridden)."""
    p.add_argument("config", type=Path)
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--out-dir")


def _overridden(tc, args: argparse.Namespace, **more):
    """A training config with the command line's --epochs, --steps-per-epoch and --out-dir (and
    `more`) put over it, where given."""
    import dataclasses

    given = {"epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "out_dir": args.out_dir, **more}
    return dataclasses.replace(tc, **{k: v for k, v in given.items() if v is not None})


def _add_train_classifier(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-classifier", help="train the fixed-length classifier baseline (JSON config); "
                                                "resumes after a kill")
    _add_training_overrides(p)
    p.add_argument("--weights", choices=["imagenet"], help="start densenet121 / mobilenetv2 from ImageNet weights "
                                                           "(downloads them)")
    p.add_argument("--devices", help="comma-separated devices for MirroredStrategy, e.g. /cpu:0,/cpu:1")
    p.set_defaults(run=_run_train_classifier)


def _run_train_classifier(args: argparse.Namespace) -> None:
    import dataclasses

    from kdetect.training.classifier import ClassifierTrainConfig, train_classifier

    tc = ClassifierTrainConfig.load(args.config)
    if args.weights:
        model = dataclasses.replace(tc.model, weights=args.weights)
        model.validate()
        tc = dataclasses.replace(tc, model=model)
    tc = _overridden(tc, args)
    summary = train_classifier(tc, devices=args.devices.split(",") if args.devices else None, log=print)
    print(f"model package: {tc.out_dir}/model (val full-string accuracy {summary['val_string_accuracy']:.4f})")


def _add_train_glyphs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-glyphs", help="train the glyph reader, the detector's second stage, from a config "
                                            "(JSON); with \"detector\" in it, write the two-stage package OUT_DIR/model")
    _add_training_overrides(p)
    p.add_argument("--detector", help="the detector package to pair the reader with, a folder or a release "
                   "reference (default@VERSION#sha256:...); overrides the config's")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(run=_run_train_glyphs)


def _run_train_glyphs(args: argparse.Namespace) -> None:
    from kdetect.training.glyphs import GlyphTrainConfig, train_glyphs

    tc = _overridden(GlyphTrainConfig.load(args.config), args, detector=args.detector)
    summary = train_glyphs(tc, log=print, force=args.force)
    where = f"; the two-stage package is {tc.out_dir}/model" if tc.detector else ""
    print(f"glyph reader: {tc.out_dir} (held-out crop accuracy {summary['val_crop_accuracy']:.4f}){where}")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model package for other runtimes")
    p.add_argument("format", choices=["tfjs", "saved_model", "tflite"])
    p.add_argument("--model", type=Path, help="a model package folder (default: the shipped model)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quantize", choices=["none", "float16", "uint8"], default="uint8",
                   help="TF.js weight quantisation (default uint8: a quarter of the float32 size)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from kdetect.package import default_model_dir
    from kdetect.serving.export import export_saved_model, export_tfjs, export_tflite, exported_size

    model = args.model or default_model_dir()
    if args.format == "saved_model":
        with native_stderr_held():  # TensorFlow's tracing logs from C++
            out = export_saved_model(model, args.out, force=args.force)
        print(f"wrote {out}")
        return
    if args.format == "tflite":
        with native_stderr_held():  # the TFLite converter logs from C++ as it works
            out = export_tflite(model, args.out, force=args.force)
        print(f"wrote {out} ({(out / 'model.tflite').stat().st_size / 1e6:.2f} MB)")
        return
    out = export_tfjs(model, args.out, None if args.quantize == "none" else args.quantize, force=args.force)
    print(f"wrote {out} ({exported_size(out) / 1e6:.2f} MB, weights {args.quantize})")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: solve freshly generated captchas of every preset")
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--count", type=int, default=5, help="captchas per preset")
    p.add_argument("--seed", type=int, default=None, help="default: a new one every run")
    p.add_argument("--model", type=Path, help="a model package folder (default: the shipped model)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> None:
    import json
    import time

    from kdetect.data import renderer
    from kdetect.data.generate import DatasetSpec, generate
    from kdetect.fsutil import staged_output
    from kdetect.serving.solver import Solver

    seed = args.seed if args.seed is not None else int(time.time())
    solver = _loaded(Solver(args.model))
    right = total = 0
    print(f"{'preset':<11} {'truth':<9} {'read':<9} {'confidence':>10}")
    for number, preset in enumerate(ENGINE_PRESETS):
        folder = args.out / preset
        # A seed per preset: presets drawing from the same alphabet would otherwise draw the same answers.
        spec = DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=seed + number,
                           count=args.count)
        with staged_output(folder, args.force) as staged:
            generate(spec, staged)
        anns = [json.loads(line) for line in (folder / "annotations.jsonl").open()]
        for ann, reading in zip(anns, solver.read_batch([folder / a["file"] for a in anns])):
            ok = reading.text == ann["text"]
            right, total = right + ok, total + 1
            print(f"{preset:<11} {ann['text']:<9} {reading.text:<9} {reading.confidence:>10.3f} {'' if ok else 'WRONG'}")
    print(f"{right} of {total} read right (seeds {seed} to {seed + number}; images in {args.out})")


def _add_web(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="serve the browser demo (web/) on localhost")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--dir", type=Path, help="the folder to serve (default: web/ of this checkout); it is only "
                                            "served: kdetect installs TF.js into its own web/ alone")
    p.set_defaults(run=_run_web)


def _run_web(args: argparse.Namespace) -> None:
    from kdetect.serving.web import TFJS, check_web, install_tfjs, make_server, web_dir

    folder = args.dir or web_dir()
    # Another folder is only served: installing there would run its package.json's scripts.
    if args.dir is None and not (folder / TFJS).is_file():
        print(f"installing the pinned TF.js into {folder}/node_modules (npm ci --ignore-scripts) ...")
        install_tfjs()
    check_web(folder)
    server = make_server(folder, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving {folder} at http://{host}:{port}/ (Ctrl+C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _add_compact(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compact", help="fold batch norm and snap weights to the uint8 grid, so a package and its "
                                       "TF.js export (uint8) read identically")
    p.add_argument("model", type=Path, help="a detector package folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(run=_run_compact)


def _run_compact(args: argparse.Namespace) -> None:
    from kdetect.training.compact import compact_package

    print(f"wrote {compact_package(args.model, args.out, force=args.force)}")


def _add_rebuild(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rebuild", help="rebuild a shipped model from the repository: the chain of generate, train "
                                       "and compact steps in a chain file (configs/rebuild/default.json)")
    p.add_argument("chain", type=Path, nargs="?", default=Path("configs/rebuild/default.json"),
                   help="the chain file (default: configs/rebuild/default.json, the shipped default model)")
    p.add_argument("--work", type=Path, help="folder for the chain's data and runs (default: the repository)")
    p.add_argument("--tiny", action="store_true",
                   help="a few images and steps per stage: checks that the chain runs end to end, in minutes; "
                        "the package it leaves is not one to use")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(run=_run_rebuild)


def _run_rebuild(args: argparse.Namespace) -> None:
    from kdetect.training.rebuild import Chain, rebuild
    from kdetect.training.releases import REPO

    chain = Chain.load(args.chain)
    package = rebuild(chain, args.work or REPO, tiny=args.tiny, force=args.force, log=print)
    print(f"rebuilt {chain.name}: {package}")


def _add_soup(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soup", help="average the weights of detectors continued from one package into one "
                                    "(a model soup): same size and speed, usually more accurate")
    p.add_argument("models", type=Path, nargs="+", help="two or more detector packages with one common ancestor")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--val", help="held-out data (a generated TFRecord folder): re-tune the thresholds there "
                                 "and record the accuracy")
    p.add_argument("--val-images", type=int, default=1000)
    p.add_argument("--greedy", action="store_true",
                   help="keep only the packages that make the average read --val better (best first)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(run=_run_soup)


def _run_soup(args: argparse.Namespace) -> None:
    from kdetect.training.soup import average_packages

    record = average_packages(args.models, args.out, args.val, args.val_images, args.greedy, force=args.force)
    used = ", ".join(p["package"] for p in record["averaged_from"])
    accuracy = f"; held-out accuracy {record['val_string_accuracy']:.4f}" if "val_string_accuracy" in record else ""
    print(f"wrote {args.out}: the mean of {used}{accuracy}")


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="the detector against the classifier baseline: docs/comparison.md and plots")
    p.add_argument("config", type=Path, nargs="?", help="a comparison config (default: the shipped configs/compare/default.json)")
    p.add_argument("--docs", type=Path, default=Path("docs"), help="where comparison.md and comparison/ go")
    p.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> None:
    from kdetect.research.compare import default_compare_config, load_compare_config, run_comparison
    from kdetect.research.report import write_report

    config = args.config or default_compare_config()
    results = run_comparison(load_compare_config(config), log=print)
    print(f"wrote {write_report(results, args.docs, f'kdetect compare {config}')}")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="read captchas over HTTP: POST /solve, POST /solve/batch, GET /health, GET /model")
    p.add_argument("--model", type=Path, help="a model package folder (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine "
                                                       "only; 0.0.0.0 for every network it is on)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own copy of the model "
                                                          "(default 1: it batches requests and uses every core)")
    p.add_argument("--api-key", help="require this key (X-API-Key header or \"Authorization: Bearer\") on every "
                                     "request but GET /health; default $KDETECT_API_KEY, else none")
    p.add_argument("--max-body-bytes", type=int, default=1024 * 1024, help="the largest request body taken")
    p.add_argument("--max-batch-images", type=int, default=64, help="the most images one /solve/batch request holds")
    p.add_argument("--max-in-flight", type=int, default=128,
                   help="requests held at once (per worker); more are answered 429")
    p.add_argument("--batch-window-ms", type=float, default=2.0,
                   help="how long a request waits for others to share its network call")
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> None:
    require("uvicorn", None, "kdetect serve")
    from kdetect.serving.server import run, serve_config

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    config = serve_config(args.model, args.api_key, max_body_bytes=args.max_body_bytes,
                          max_batch_images=args.max_batch_images, max_in_flight=args.max_in_flight,
                          batch_window_ms=args.batch_window_ms)
    if args.host not in ("127.0.0.1", "localhost", "::1") and config.api_key is None:
        print(f"kdetect: warning: serving on {args.host} without an API key: anyone who reaches it can use it",
              file=sys.stderr)
    print(f"serving {config.model or 'the shipped model'} at http://{args.host}:{args.port}/ "
          f"({args.workers} worker{'s' if args.workers > 1 else ''}; Ctrl+C stops)", flush=True)
    try:
        run(config, args.host, args.port, args.workers)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
