"""Loading verl's math_dapo.py out of a wheel, offline: a tiny locally built fake wheel (nothing of verl's
code in it), the cache, resolving the newest release, and the one-line failures."""

import subprocess
import zipfile

import pytest

from fastdapo_bench import verl_math_dapo as vm

# a hand-written stand-in with verl's entry point; not verl's code
FAKE_MATH_DAPO = """import re


def compute_score(solution_str, ground_truth, strict_box_verify=False, pause_tokens_index=None):
    found = re.findall(r"Answer:\\s*([^\\n]+)", solution_str[-300:])
    ok = bool(found) and found[-1].strip() == ground_truth
    return {"score": 1.0 if ok else -1.0, "acc": ok, "pred": found[-1] if found else ""}
"""


def fake_wheel(cache, version, source=FAKE_MATH_DAPO, member=vm.MEMBER):
    folder = cache / f"verl-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"verl-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(member, source)
        z.writestr("verl/__init__.py", "raise ImportError('the verl package must not be imported')\n")
    return wheel


@pytest.fixture
def no_pip(monkeypatch):
    calls = []

    def pip(*args):
        calls.append(args)
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found for verl")

    monkeypatch.setattr(vm, "_pip", pip)
    return calls


def test_cached_wheel_loads_without_network_or_the_verl_package(tmp_path, no_pip):
    wheel = fake_wheel(tmp_path, "0.0.1")
    ref = vm.verl_math_dapo("0.0.1", tmp_path)
    assert (ref.version, ref.wheel, ref.fetched, no_pip) == ("0.0.1", wheel, False, [])
    assert vm.accepted(ref.compute_score, "Answer: 7", "7") is True
    assert vm.accepted(ref.compute_score, "Answer: 8", "7") is False
    assert vm.accepted(ref.compute_score, None, "7") is None  # it raised: counted, not fatal
    assert (wheel.parent / "math_dapo.py").read_text() == FAKE_MATH_DAPO
    assert len(ref.sha256) == 64


def test_download_goes_to_the_versions_cache_folder(tmp_path, monkeypatch):
    def pip(*args):
        assert args[:4] == ("download", "verl==0.0.2", "--no-deps", "--only-binary=:all:")
        fake_wheel(tmp_path, "0.0.2")
        return subprocess.CompletedProcess(args, 0, "Saved", "")

    monkeypatch.setattr(vm, "_pip", pip)
    ref = vm.verl_math_dapo("0.0.2", tmp_path)
    assert ref.fetched and ref.wheel.parent == tmp_path / "verl-0.0.2"


def test_failed_download_is_one_line_naming_the_version(tmp_path, no_pip):
    with pytest.raises(vm.VerlFetchError) as e:
        vm.verl_math_dapo("9.9.9", tmp_path)
    msg = str(e.value)
    assert msg.startswith("could not fetch verl==9.9.9 (ERROR: No matching distribution found for verl)")
    assert "check network access to PyPI" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "source,member,fragment",
    [
        ("from verl.utils import torch_functional\n", vm.MEMBER, "math_dapo.py imports verl"),
        ("x = 1\n", vm.MEMBER, "defines no compute_score"),
        (FAKE_MATH_DAPO, "verl/other.py", "holds no readable verl/utils/reward_score/math_dapo.py"),
    ],
)
def test_unusable_wheels_are_one_line(tmp_path, no_pip, source, member, fragment):
    fake_wheel(tmp_path, "0.0.3", source, member)
    with pytest.raises(vm.VerlFetchError, match=fragment) as e:
        vm.verl_math_dapo("0.0.3", tmp_path)
    assert "\n" not in str(e.value)


def test_version_must_look_like_one(tmp_path, no_pip):
    with pytest.raises(vm.VerlFetchError, match="is not a version number"):
        vm.fetch_wheel("../../etc", tmp_path)


def test_older_releases_returning_a_bare_score_are_read():
    assert vm.accepted(lambda s, g: 1.0, "x", "y") is True
    assert vm.accepted(lambda s, g: -1.0, "x", "y") is False


def test_newest_comes_from_pip_else_from_the_cache(tmp_path, monkeypatch, no_pip):
    with pytest.raises(vm.VerlFetchError, match="could not resolve the newest verl release"):
        vm.resolve_newest(tmp_path)
    fake_wheel(tmp_path, "0.9.0")
    fake_wheel(tmp_path, "0.10.0")
    assert vm.resolve_newest(tmp_path) == ("0.10.0", True)  # numeric order, offline
    listing = "verl (0.9.1)\nAvailable versions: 0.9.1, 0.9.0\n"
    monkeypatch.setattr(vm, "_pip", lambda *a: subprocess.CompletedProcess(a, 0, listing, ""))
    assert vm.resolve_newest(tmp_path) == ("0.9.1", False)
