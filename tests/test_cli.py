"""Commands attach lazily, and one that cannot load fails loudly instead of vanishing from --help."""

import click
import pytest
from click.testing import CliRunner

from fastdapo import cli


def test_help_lists_every_command():
    out = CliRunner().invoke(cli.main, ["--help"])
    assert out.exit_code == 0, out.output
    for name in [*cli.COMMANDS, "train", "bench"]:
        assert f"  {name} " in out.output
    bench = CliRunner().invoke(cli.main, ["bench", "--help"])
    assert bench.exit_code == 0 and all(name in bench.output for name in cli.BENCH_COMMANDS)


@pytest.fixture
def broken_command(monkeypatch):
    group = cli.LazyGroup(name="fastdapo", lazy={"eval": "fastdapo.no_such_module:eval_command"})
    group.add_command(click.Command("train", callback=lambda: None))
    return group


def test_broken_command_fails_help_naming_the_module(broken_command):
    out = CliRunner().invoke(broken_command, ["--help"])
    assert out.exit_code != 0
    assert "command 'eval' cannot load: fastdapo.no_such_module: ModuleNotFoundError" in out.output


def test_broken_command_does_not_break_the_others(broken_command):
    assert CliRunner().invoke(broken_command, ["train"]).exit_code == 0
    out = CliRunner().invoke(broken_command, ["eval"])
    assert out.exit_code != 0 and "fastdapo.no_such_module" in out.output


def test_target_that_is_not_a_command_is_refused():
    with pytest.raises(click.ClickException, match="is not a click command"):
        cli.load_command("x", "fastdapo.cli:COMMANDS")
