"""The demo recipe's fix for its second-half decline (issue 13).

Trained on batch statistics to the end, the demo's AP fell in the second half (seed 0: AP50 0.62
at epoch 5, 0.46 at the end) while its training loss kept falling: on a few images the features
run away under the running statistics inference uses (an image's own outliers inflate the batch
variance in training, which hides it), giving dozens of confident background boxes there. The
demo trains its last epochs on the running statistics (``freeze_bn_epoch``), so that error is in
the loss; with it the last epoch was the best for seeds 0, 1 and 2.
"""
import paddle

import ppdet_lite
from ppdet_lite.engine.hooks import FreezeBNHook
from ppdet_lite.engine.trainer import Trainer

from .helpers import DEMO, tiny_cfg


def test_the_demo_trains_its_last_epochs_on_the_inference_bn_statistics(tmp_path):
    demo = ppdet_lite.load_config(DEMO)
    epochs, start = demo["epoch"], demo.get("freeze_bn_epoch")
    assert start is not None and 0 < start < epochs, "the demo must freeze BatchNorm for its last epochs"
    trainer = Trainer(tiny_cfg(tmp_path, epoch=epochs, freeze_bn_epoch=start), seed=0)
    assert any(isinstance(h, FreezeBNHook) and h.start == start for h in trainer.hooks)
    bns = [m for m in trainer.model.sublayers() if isinstance(m, paddle.nn.layer.norm._BatchNormBase)]
    for epoch, frozen in ((0, False), (start - 1, False), (start, True), (epochs - 1, True)):
        trainer.epoch = epoch
        trainer.train_model.train()  # what the loop does before each epoch's hooks
        trainer._call("before_epoch")
        assert all(not m.training for m in bns) == frozen and all(m.training for m in bns) != frozen, epoch
