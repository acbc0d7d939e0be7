"""`fastdapo bench ablation`: the rungs are the paper's cumulative Table 1 rows, exactly as documented, and the plan
turns them into valid `fastdapo train` commands. Pure config: nothing trains here."""

import sys
from pathlib import Path

import pytest

from fastdapo.config import load_config
from fastdapo_bench import ablation_plan, ablation_rungs
from fastdapo_bench.ablation_plan import PlanError, plan_runs, resolve_config
from fastdapo_bench.ablation_rungs import LADDER_KEYS, RUNGS, select_rungs

A = "algorithm."
# The ladder as the rungs module's docstring states it: (name, loss_agg_mode, eps_low, eps_high, filtering,
# shaping, dynamic sampling).
EXPECTED = [
    ("naive-grpo", "seq-mean-token-mean", 0.2, 0.2, False, False, False),
    ("overlong-filtering", "seq-mean-token-mean", 0.2, 0.2, True, False, False),
    ("clip-higher", "seq-mean-token-mean", 0.2, 0.28, True, False, False),
    ("soft-overlong-punishment", "seq-mean-token-mean", 0.2, 0.28, True, True, False),
    ("token-level-loss", "token-mean", 0.2, 0.28, True, True, False),
    ("dynamic-sampling", "token-mean", 0.2, 0.28, True, True, True),
]
KEYS = ["loss_agg_mode", "eps_low", "eps_high", "overlong_filtering", "overlong_shaping", "dynamic_sampling"]


def test_rungs_are_the_papers_rows_in_order():
    assert [r.name for r in RUNGS] == [e[0] for e in EXPECTED]
    assert [r.title for r in RUNGS] == [
        "Naive GRPO",
        "+ Overlong Filtering",
        "+ Clip-Higher",
        "+ Soft Overlong Punishment",
        "+ Token-level Loss",
        "+ Dynamic Sampling (DAPO)",
    ]
    for rung, (_, *values) in zip(RUNGS, EXPECTED):
        assert rung.settings == {A + k: v for k, v in zip(KEYS, values)}, rung.name


def test_rungs_are_cumulative_one_technique_each():
    assert RUNGS[0].adds == {}
    for before, rung in zip(RUNGS, RUNGS[1:]):
        assert len(rung.adds) == 1, rung.name
        assert rung.settings == {**before.settings, **rung.adds}, rung.name
        ((key, value),) = rung.adds.items()
        assert before.settings[key] != value, rung.name  # it really changes something
    assert set(RUNGS[0].settings) == set(LADDER_KEYS) == {A + k for k in KEYS}


def test_docstring_table_matches_the_rungs():
    rows = {}
    for line in ablation_rungs.__doc__.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].split(" ")[0] in {r.name for r in RUNGS}:
            rows[cells[0].split(" ")[0]] = cells[1:]
    assert list(rows) == [r.name for r in RUNGS]
    for rung in RUNGS:
        documented = rows[rung.name]
        actual = [str(v).lower() if isinstance(v, bool) else str(v) for v in rung.settings.values()]
        assert documented == actual, rung.name


def test_every_rung_resolves_to_its_settings_and_keeps_the_base_dual_clip():
    base = load_config("configs/toy.yaml").algorithm.dual_clip
    for rung in RUNGS:
        cfg = load_config("configs/toy.yaml", rung.overrides())
        a = cfg.algorithm
        assert a.dual_clip == base  # not a rung setting: the base config's on every rung
        for key, value in rung.settings.items():
            assert getattr(a, key.removeprefix(A)) == value, (rung.name, key)


def test_select_rungs_keeps_ladder_order_and_names_unknown_ones():
    assert [r.name for r in select_rungs("dynamic-sampling, naive-grpo")] == ["naive-grpo", "dynamic-sampling"]
    assert select_rungs(None) == list(RUNGS)
    with pytest.raises(ValueError, match=r"unknown rung 'clip-hihger' \(did you mean 'clip-higher'\?\)"):
        select_rungs("clip-hihger")


def _sets(command: list[str]) -> dict[str, str]:
    pairs = [command[i + 1] for i, c in enumerate(command) if c == "--set"]
    return dict(p.split("=", 1) for p in pairs)  # later wins, as in `fastdapo train`


def test_plan_one_validated_command_per_rung_and_seed(tmp_path):
    specs = plan_runs("configs/toy.yaml", list(RUNGS), 2, tmp_path, steps=5, user_sets=["optimizer.lr=0.001"])
    assert [(s.rung.name, s.seed) for s in specs] == [(r.name, k) for r in RUNGS for k in (0, 1)]
    for s in specs:
        assert s.command[:5] == [sys.executable, "-m", "fastdapo.cli", "train", "configs/toy.yaml"]
        sets = _sets(s.command)
        assert sets["run.seed"] == str(s.seed) and sets["run.steps"] == "5" and sets["optimizer.lr"] == "0.001"
        assert sets["run.output_dir"] == str(tmp_path / s.rung.name / f"seed{s.seed}") and sets["run.resume"] == "never"
        text = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in s.rung.settings.items()}
        assert {k: v for k, v in sets.items() if k in LADDER_KEYS} == text
        assert "algorithm.dual_clip" not in sets
        assert s.log == tmp_path / "logs" / f"{s.rung.name}-seed{s.seed}.log"
    assert len({s.run_dir for s in specs}) == len(specs)


def test_plan_quick_preset_and_user_sets(tmp_path):
    (spec,) = plan_runs("configs/toy.yaml", [RUNGS[0]], 1, tmp_path, quick=True)
    sets = _sets(spec.command)
    assert sets["run.steps"] == "2" and sets["toy.hidden_size"] == "32" and sets["algorithm.train_batch_size"] == "4"
    (spec,) = plan_runs("configs/toy.yaml", [RUNGS[0]], 1, tmp_path, quick=True, steps=3)
    assert _sets(spec.command)["run.steps"] == "3"  # --steps wins over the preset
    (spec,) = plan_runs("configs/toy.yaml", [RUNGS[0]], 1, tmp_path, user_sets=["algorithm.dual_clip=3.0"])
    assert _sets(spec.command)["algorithm.dual_clip"] == "3.0"  # verl's dual clip on every rung, when asked
    for bad, message in [
        ("algorithm.eps_high=0.3", "set by the ablation rungs"),
        ("algorithm.dynamic_sampling=true", "set by the ablation rungs"),
        ("run.seed=4", "owned by the bench"),
        ("run.output_dir=x", "owned by the bench"),
        ("optimizer.lr", "expected KEY=VALUE"),
        ("algorithm.eps_hgh=0.3", "unknown key 'algorithm.eps_hgh'"),
    ]:
        with pytest.raises(PlanError, match=message):
            plan_runs("configs/toy.yaml", list(RUNGS), 1, tmp_path, user_sets=[bad])


def test_default_config_is_the_chain_task_in_a_checkout_or_installed(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the repository root
    assert resolve_config(None) == "configs/toy-chain.yaml"
    monkeypatch.chdir(tmp_path)  # no configs/ here: the copy the package carries
    assert resolve_config(None) == str(ablation_plan.TOY_CHAIN_CONFIG)
    assert load_config(resolve_config(None)).toy.task == "chain"
    with pytest.raises(PlanError, match="--config missing.yaml: no such file"):
        resolve_config("missing.yaml")
