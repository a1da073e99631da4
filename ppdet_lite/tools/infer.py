"""Detect objects in images and write annotated copies:
python tools/infer.py -c CONFIG -o weights=output/NAME/best_model --infer_img demo.jpg"""
import json
import os

from ..utils.cli import ArgsParser, load_configs, run, score_threshold


def collect_images(infer_img, infer_dir):
    """The images to read: ``--infer_img FILE`` or the images of ``--infer_dir DIR``."""
    from ..runtime.images import IMAGE_EXTS, list_images

    if infer_img:
        if not os.path.isfile(infer_img):
            raise SystemExit(f"--infer_img {infer_img}: no such file")
        return [infer_img]
    if not infer_dir or not os.path.isdir(infer_dir):
        raise SystemExit(f"pass --infer_img FILE or --infer_dir DIR (got {infer_dir!r})")
    images = list_images(infer_dir)
    if not images:
        raise SystemExit(f"--infer_dir {infer_dir}: no images ({', '.join(IMAGE_EXTS)})")
    return images


def annotated_path(output_dir: str, image: str, inputs) -> str:
    """``output_dir/<name>``, or ``<stem>_det<ext>`` (``_det2``, ...) where that would be one of the
    ``inputs``: an annotated copy never replaces an image being read."""
    protected = {os.path.realpath(p) for p in inputs}
    stem, ext = os.path.splitext(os.path.basename(image))
    candidate, n = os.path.join(output_dir, stem + ext), 1
    while os.path.realpath(candidate) in protected:
        candidate = os.path.join(output_dir, f"{stem}_det{n if n > 1 else ''}{ext}")
        n += 1
    return candidate


def main(argv=None) -> None:
    parser = ArgsParser(description=__doc__, slim=True)
    parser.add_argument("--infer_img", default=None, help="one image")
    parser.add_argument("--infer_dir", default=None, help="a directory of images")
    parser.add_argument("--draw_threshold", type=score_threshold, default=0.5, help="score threshold for drawn boxes")
    parser.add_argument("--output_dir", default="output", help="where annotated images and results go")
    parser.add_argument("--save_results", action="store_true", help="also write bbox.json with every box")
    args = parser.parse_args(argv)

    images = collect_images(args.infer_img, args.infer_dir)
    import cv2

    from ..runtime.images import read_image
    from ..utils.visualize import draw_boxes

    cfg, slim_cfg = load_configs(args)
    model = None
    if slim_cfg is not None:
        from ..slim import build_slim_model

        model = build_slim_model(cfg, slim_cfg, "eval").model
    from ..engine.predictor import Detector

    detector = Detector(cfg, threshold=args.draw_threshold, model=model)
    os.makedirs(args.output_dir, exist_ok=True)
    results = []
    for path in images:
        rgb = read_image(path)
        res = detector.predict(rgb)
        out_path = annotated_path(args.output_dir, path, images)
        drawn = draw_boxes(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), res["boxes"], res["class_ids"], res["scores"],
                           detector.names)
        cv2.imwrite(out_path, drawn)
        print(f"{path}: {len(res['boxes'])} boxes -> {out_path}")
        results.append({"image": path, **res.to_json()})
    if args.save_results:
        path = os.path.join(args.output_dir, "bbox.json")
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
        print(f"results: {path}")


def cli() -> None:
    run(main)
