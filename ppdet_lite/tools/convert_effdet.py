"""Convert an effdet (rwightman/efficientdet-pytorch 0.4.x, timm) checkpoint to ppdet_lite weights:
python tools/convert_effdet.py --src tf_efficientdet_d0.pth -c configs/efficientdet_d0.yml \
    --dst output/efficientdet_d0/effdet_converted     (writes <dst>.pdparams)

--src is a .pth (torch must be importable) or a .npz of the state_dict. The config must match the
checkpoint (d0..d7x, num_classes); a mismatch exits 2 naming the tensors.
"""
import argparse
import sys

from ..modeling.effdet_convert import convert_effdet_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="effdet checkpoint (.pth or .npz)")
    parser.add_argument("-c", "--config", required=True, help="configs/efficientdet_d*.yml")
    parser.add_argument("--dst", required=True, help="output path prefix (.pdparams added)")
    args = parser.parse_args(argv)
    try:
        out = convert_effdet_checkpoint(args.src, args.config, args.dst)
    except (ValueError, OSError) as e:
        print(f"convert_effdet: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def cli() -> None:
    sys.exit(main())
