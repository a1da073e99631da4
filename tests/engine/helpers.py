"""A tiny shapes config for engine tests: 16 train / 8 val images at 96 px, batch 8, no workers."""
import os

import ppdet_lite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml")


def tiny_cfg(tmp_path, **extra):
    data = str(tmp_path / "shapes")
    overrides = {
        "TrainDataset.dataset_dir": data, "TrainDataset.num_images": 16, "TrainDataset.image_size": 96,
        "EvalDataset.dataset_dir": data, "EvalDataset.num_images": 8, "EvalDataset.image_size": 96,
        "TestDataset.dataset_dir": data,
        "TrainReader.batch_size": 8, "EvalReader.batch_size": 8, "worker_num": 0,
        "save_dir": str(tmp_path / "output"), "epoch": 2, "snapshot_epoch": 1, "log_iter": 1,
        "LearningRate.schedulers": [{"name": "LinearWarmup", "start_factor": 0.1, "steps": 2}],
        "LearningRate.base_lr": 0.01,
    }
    overrides.update(extra)
    return ppdet_lite.load_config(DEMO, overrides)
