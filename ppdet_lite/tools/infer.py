"""Detect objects in images and write annotated copies:
python tools/infer.py -c CONFIG -o weights=output/NAME/best_model --infer_img demo.jpg"""
import json
import os

from ..core.errors import writable_dir
from ..utils.cli import ArgsParser, load_configs, run, score_threshold


def main(argv=None) -> None:
    parser = ArgsParser(description=__doc__, slim=True)
    parser.add_argument("--infer_img", default=None, help="one image")
    parser.add_argument("--infer_dir", default=None, help="a directory of images")
    parser.add_argument("--draw_threshold", type=score_threshold, default=0.5, help="score threshold for drawn boxes")
    parser.add_argument("--output_dir", default="output", help="where annotated images and results go")
    parser.add_argument("--save_results", action="store_true", help="also write bbox.json with every box")
    args = parser.parse_args(argv)

    import cv2

    from ..runtime.images import annotated_path, check_complete, input_images, read_image

    images = input_images(args.infer_img, args.infer_dir, "--infer_img", "--infer_dir")
    for path in images:  # a file cut short decodes into grey rows: refuse it before any work
        check_complete(path)
    from ..utils.visualize import draw_boxes

    cfg, slim_cfg = load_configs(args)
    writable_dir(args.output_dir, "--output_dir")
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
