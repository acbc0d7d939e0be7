"""`fastdapo check-model`: passes on a correct model, fails with a readable table when the model's
forward does something to its logits that its config does not declare."""

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from fastdapo.cli import main
from fastdapo.toy.tokenizer import build_char_tokenizer


class HiddenScaleConfig(Qwen2Config):
    model_type = "qwen2_hidden_scale"


class HiddenScaleForCausalLM(Qwen2ForCausalLM):
    """Multiplies its logits by a factor no config key declares: the transform nobody anticipated."""

    config_class = HiddenScaleConfig

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 1.5
        return out


AutoConfig.register(HiddenScaleConfig.model_type, HiddenScaleConfig)
AutoModelForCausalLM.register(HiddenScaleConfig, HiddenScaleForCausalLM)


def save_tiny(path, config_cls, model_cls):
    tok = build_char_tokenizer()
    cfg = config_cls(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = model_cls(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.1)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def check(path, *args):
    return CliRunner().invoke(main, ["check-model", str(path), *args], catch_exceptions=False)


def test_check_model_passes_on_a_correct_model(tmp_path):
    result = check(save_tiny(tmp_path / "qwen2", Qwen2Config, Qwen2ForCausalLM), "--temperature", "0.8")
    assert result.exit_code == 0, result.output
    out = result.output
    for row in (
        "trainer (shared-prompt packing) vs model",
        "trainer (plain packing) vs model",
        "rollout engine (torch) vs model",
    ):
        assert row in out
    assert out.count(" ok ") >= 3 and "MISMATCH" not in out


def test_check_model_fails_on_an_undeclared_logit_transform(tmp_path):
    result = check(save_tiny(tmp_path / "scaled", HiddenScaleConfig, HiddenScaleForCausalLM))
    assert result.exit_code == 1
    assert "HiddenScaleForCausalLM" in result.output
    assert result.output.count("MISMATCH") == 2  # both trainer rows; the engine samples from the forward itself
    assert "rollout engine (torch) vs model" in result.output


def test_check_model_refuses_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["check-model", str(tmp_path)])
    assert result.exit_code == 1 and "no config.json" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["check-model"])
def test_listed_in_help(name):
    assert name in CliRunner().invoke(main, ["--help"]).output
