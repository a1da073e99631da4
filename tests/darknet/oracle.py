"""Helpers for the darknet tests: build a fixture model, give it BN-calibrated random weights
(``ppdet_lite.modeling.random_weights.randomize``), capture our per-darknet-layer outputs, and
run OpenCV's DNN on darknet files."""
import os
from typing import Dict, List, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

import ppdet_lite
from ppdet_lite.darknet.graph import describe
from ppdet_lite.modeling.random_weights import randomize  # noqa: F401  (the tests import it from here)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "darknet")

# our config -> AlexeyAB's cfg
MODELS = {"yolov4_cspdarknet53": "yolov4", "yolov4_tiny": "yolov4-tiny",
          "yolov4_csp": "yolov4-csp", "yolov4x_mish": "yolov4x-mish", "yolov4_p5": "yolov4-p5",
          "yolov4_p6": "yolov4-p6", "yolov4_p7": "cspx-p7-mish"}


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name + ".cfg")


def build(config: str, overrides=None):
    cfg = ppdet_lite.load_config(os.path.join(ROOT, "configs", config + ".yml"),
                                 overrides=overrides)
    model = ppdet_lite.build_model(cfg)
    model.eval()
    return model


def our_layer_outputs(model, image: np.ndarray) -> Tuple[Dict[int, np.ndarray], List[np.ndarray]]:
    """Outputs of every darknet conv layer of ``model`` (post-activation, as darknet's) and the
    head maps, for ``image`` [1, 3, H, W]."""
    g = describe(model)
    outs, hooks = {}, []
    for index, module in g.modules.items():
        act = g.layers[index].attrs["activation"]

        def hook(layer, inp, out, index=index, act=act):
            outs[index] = (F.sigmoid(out) if act == "logistic" and isinstance(layer, nn.Conv2D)
                           else out).numpy()
        hooks.append(module.register_forward_post_hook(hook))
    with paddle.no_grad():
        heads = model.yolo_head(model.neck(model.backbone({"image": paddle.to_tensor(image)})))
    for h in hooks:
        h.remove()
    return outs, [h.numpy() for h in heads]


def opencv_outputs(cfg_path: str, weights_path: str, image: np.ndarray, conv_layers, yolo_layers):
    """OpenCV DNN blobs: the last blob of each darknet conv layer (activation, else bn/conv) and
    the [yolo] outputs; dicts keyed by darknet layer index."""
    import cv2

    net = cv2.dnn.readNetFromDarknet(cfg_path, weights_path)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.enableFusion(False)  # keep every layer's blob (fused layers compute in place)
    names = set(net.getLayerNames())
    # OpenCV names a conv layer i's blobs conv_i, bn_i and <activation>_{i+1}
    wanted = []
    for i in conv_layers:
        for name in [f"{act}_{i + 1}" for act in ("leaky", "mish", "logistic", "swish", "relu")
                     ] + [f"bn_{i}", f"conv_{i}"]:
            if name in names:
                wanted.append(name)
                break
        else:
            raise KeyError(f"no OpenCV blob for darknet layer {i}")
    wanted += [f"yolo_{i}" for i in yolo_layers]
    net.setInput(image)
    blobs = net.forward(wanted)
    conv = {i: blobs[k] for k, i in enumerate(conv_layers)}
    yolo = {i: blobs[len(conv_layers) + k] for k, i in enumerate(yolo_layers)}
    return conv, yolo, net
