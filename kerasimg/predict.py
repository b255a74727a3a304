"""``python -m kerasimg.predict --model saved_models/NAME[/VERSION] IMAGE_OR_FOLDER... [--top-k 3] [--json]``.

Loads the SavedModel with plain TensorFlow (no kerasimg model code) and sends each
file's bytes through its ``serving_default`` signature, as TF Serving would.
Unreadable files are reported by name; the rest are still predicted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kerasimg.cli import run_cli
from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.errors import UserError


def resolve_model_dir(path: str, zoo: str | Path = "saved_models") -> Path:
    """A SavedModel folder, a model folder (its newest integer version), or ``NAME[/VERSION]`` in ``zoo``."""
    folder = Path(path)
    if (folder / "saved_model.pb").exists():
        return folder
    if not folder.exists():
        from kerasimg.serving.zoo import Zoo

        return Zoo(zoo).resolve(path)
    versions = sorted(
        (int(p.name) for p in folder.glob("*") if p.is_dir() and p.name.isdigit()), reverse=True
    )
    if not versions:
        raise UserError(f"No SavedModel at {folder} (expected saved_model.pb or integer version folders).")
    return folder / str(versions[0])


def list_images(targets: list[str]) -> list[Path]:
    from kerasimg.data.sources import is_hidden

    files = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not is_hidden(p.name))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"No such file or folder: {target}")
    return files


def predict_files(
    model_dir: Path, files: list[Path], top_k: int = 3, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[dict]:
    """One result per file: ``{file, top: [(class, score)...]}`` or ``{file, error}``."""
    import tensorflow as tf

    from kerasimg.data.verify import check_image

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    results = []
    for path in files:
        # The same check training uses, so a bad file gets its reason instead of a graph error.
        reason = check_image(str(path), max_pixels)
        if reason:
            results.append({"file": str(path), "error": reason})
            continue
        out = serve(image_bytes=tf.constant([path.read_bytes()]))
        names = [n.decode() for n in out["top_k_classes"].numpy()[0][:top_k]]
        scores = [float(s) for s in out["top_k_scores"].numpy()[0][:top_k]]
        results.append({"file": str(path), "top": list(zip(names, scores))})
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kerasimg.predict", description=__doc__)
    p.add_argument(
        "--model",
        required=True,
        help="saved_models/NAME[/VERSION], a SavedModel folder, or NAME[/VERSION] in --zoo",
    )
    p.add_argument("--zoo", default="saved_models", help="the zoo that --model NAME is looked up in")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="skip images whose header claims more pixels than this",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run() -> int:
        results = predict_files(
            resolve_model_dir(args.model, args.zoo), list_images(args.images), args.top_k, args.max_pixels
        )
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            for r in results:
                if "error" in r:
                    print(f"{r['file']}: UNREADABLE ({r['error']})")
                else:
                    print(f"{r['file']}: " + ", ".join(f"{n} {s:.1%}" for n, s in r["top"]))
        bad = sum("error" in r for r in results)
        if bad:
            print(f"{bad} of {len(results)} file(s) could not be read.", file=sys.stderr)
        if bad == len(results):
            print("error: nothing could be predicted.", file=sys.stderr)
            return 1
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
