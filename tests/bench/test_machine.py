"""The head of every results file: the command as a user typed it, the machine, the versions, the commit."""

import sys

import torch

from fastdapo_bench import machine


def test_invocation_is_the_command_as_typed(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/fastdapo", "bench", "kernels", "--shapes", "8x16x32,4x8x16"])
    assert machine.invocation() == "fastdapo bench kernels --shapes 8x16x32,4x8x16"
    monkeypatch.setattr(sys, "argv", ["/somewhere/bench/fastdapo_bench/packing.py", "--label", "a b"])
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None, raising=False)
    assert machine.invocation() == "python /somewhere/bench/fastdapo_bench/packing.py --label 'a b'"


def test_machine_line_names_the_cpu_versions_and_commit():
    info = machine.machine_info()
    line = machine.machine_line(info, extra=("click", "no-such-dist"))
    assert line.startswith(f"Machine: {machine.cpu_name()}, {info['cores']} cores")
    assert f"torch {torch.__version__}" in line and "no-such-dist not installed" in line
    assert f"fastdapo commit {info['fastdapo_commit']}." in line and info["fastdapo_commit"]
    (command, line2) = machine.provenance()
    assert command.startswith("Command: `") and line2.startswith("Machine: ")
