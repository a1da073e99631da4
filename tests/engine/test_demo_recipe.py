"""The demo recipe's fix for its second-half decline (issue 13).

With ``Gt2YoloTarget.iou_thresh 0.25`` an object trains up to 9 anchors on 3 levels; their
objectness all goes to 1 while the boxes of the off-scale anchors stay poor. Scored by objectness
and class alone, those mislocalized duplicates outranked good boxes of other images more and more
as training went on (seed 0: AP50 0.62 at epoch 5, 0.46 at the end, while recall rose). The demo's
head is IoU-aware: the score of a box is ``obj^0.5 * iou^0.5 * cls``, so of two boxes with equal
objectness and class, the one whose predicted IoU is lower ranks lower.
"""
import numpy as np
import paddle

from ppdet_lite.modeling.builder import build_model

from .helpers import tiny_cfg


def test_demo_ranks_equal_objectness_boxes_by_predicted_iou(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"BBoxPostProcess.nms.nms_threshold": 0.99})  # keep the duplicates
    model = build_model(cfg)
    model.eval()
    head = model.yolo_head
    assert head.iou_aware and head.loss.iou_aware_loss is not None, "the demo must train and use an IoU per box"
    nc = head.num_classes
    iou_logits = {0: 2.0, 1: -1.0, 2: 0.0}  # anchor -> predicted IoU logit (0.88, 0.27, 0.5)
    for i, conv in enumerate(head.yolo_outputs):
        na = len(head.anchors[i])
        bias = np.full(conv.bias.shape, -10.0, np.float32)   # nothing anywhere ...
        if i == 0:                                             # ... but the 3 anchors of the stride-32 level
            bias[:na] = [iou_logits[a] for a in range(na)]
            for a in range(na):
                base = na + a * (5 + nc)
                bias[base:base + 4] = 0.0                      # a box at each cell centre, anchor size
                bias[base + 4] = 3.0                           # equal objectness
                bias[base + 5] = 3.0                           # equal class 0 score
        conv.weight.set_value(np.zeros(conv.weight.shape, np.float32))
        conv.bias.set_value(bias)
    image = paddle.zeros([1, 3, 96, 96])
    out = model({"image": image, "im_shape": paddle.to_tensor([[96., 96.]]),
                 "scale_factor": paddle.to_tensor([[1., 1.]])})
    bbox = out["bbox"].numpy()
    assert len(bbox) > 0
    anchors = head.anchors[0]
    scores = {}
    for _, score, x1, y1, x2, y2 in bbox:
        if abs((x1 + x2) / 2 - 48) > 1 or abs((y1 + y2) / 2 - 48) > 1:
            continue  # the centre cell's boxes only: no clipping at the border
        w, h = x2 - x1, y2 - y1
        a = int(np.argmin([abs(w - aw) + abs(h - ah) for aw, ah in anchors]))
        scores.setdefault(a, []).append(score)
    assert sorted(scores) == [0, 1, 2], scores
    best = {a: max(s) for a, s in scores.items()}
    assert best[0] > best[2] > best[1], best
    sigmoid = lambda v: 1 / (1 + np.exp(-v))
    for a, logit in iou_logits.items():
        np.testing.assert_allclose(best[a], np.sqrt(sigmoid(3.0) * sigmoid(logit)) * sigmoid(3.0), rtol=1e-4)
