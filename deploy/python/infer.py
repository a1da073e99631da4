"""Run an exported detector with Paddle Inference on images, a video or a camera
(``ppdet_lite.deploy.infer``; ``--help`` lists the flags)."""
from ppdet_lite.deploy.infer import cli

if __name__ == "__main__":
    cli()
