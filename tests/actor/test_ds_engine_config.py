import json

import pytest
import torch

from fastdapo.actor.ds_engine import generated_ds_config, merge_user_config
from fastdapo.config import load_config


def test_generated_config_follows_fastdapo_config():
    cfg = load_config()
    cfg.distributed.zero_stage, cfg.distributed.offload_optimizer, cfg.distributed.offload_params = 3, True, True
    cfg.optimizer.grad_clip = 0.5
    ds = generated_ds_config(cfg, torch.bfloat16)
    z = ds["zero_optimization"]
    assert z["stage"] == 3 and z["offload_optimizer"]["device"] == "cpu" and z["offload_param"]["device"] == "cpu"
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"] and ds["gradient_clipping"] == 0.5


def test_user_json_wins_and_conflicts_are_reported(tmp_path, caplog):
    gen = generated_ds_config(load_config(None, ["distributed.zero_stage=2"]), torch.float32)
    user = tmp_path / "ds.json"
    user.write_text(
        json.dumps(
            {
                "zero_optimization": {"stage": 1, "reduce_bucket_size": 1000},
                "gradient_clipping": 1.0,
                "comms_logger": {"enabled": True},
            }
        )
    )
    merged, conflicts = merge_user_config(gen, str(user))
    assert merged["zero_optimization"]["stage"] == 1 and merged["zero_optimization"]["reduce_bucket_size"] == 1000
    assert merged["comms_logger"] == {"enabled": True} and merged["train_micro_batch_size_per_gpu"] == 1
    assert conflicts == ["zero_optimization.stage: 2 -> 1"]  # same value (clipping 1.0) is no conflict
    assert "zero_optimization.stage: 2 -> 1" in caplog.text


def test_unreadable_user_json_names_the_setting(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="distributed.deepspeed_config: cannot read"):
        merge_user_config({}, str(bad))
