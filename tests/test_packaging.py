"""The package list in pyproject.toml is written by hand (kernels/ and bench/ hold their packages one folder
down): every package folder must be in it, or an installed copy would miss that package; and no folder in
the repository root may be importable under a name an installed package could own."""

from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    dirs = {setup["package-dir"].get(name, name.replace(".", "/")) for name in listed}
    assert all((ROOT / d).is_dir() for d in dirs), sorted(d for d in dirs if not (ROOT / d).is_dir())
    found = {
        str(p.parent.relative_to(ROOT))
        for top in ("fastdapo", "bench", "kernels")
        for p in (ROOT / top).rglob("*.py")
        if "__pycache__" not in p.parts and p != ROOT / "bench" / "gpu_check.py"  # a script, run by path
    }
    assert found <= dirs, sorted(found - dirs)
    assert setup["package-dir"]["fastdapo_kernels"] == "kernels/fastdapo_kernels" and "kernels" not in listed
    assert setup["package-dir"]["fastdapo_bench"] == "bench/fastdapo_bench" and "bench" not in listed


def test_no_root_folder_is_a_regular_package_but_fastdapo():
    """A regular package in the root (a folder with __init__.py) wins over an installed one of that name for any
    Python started here; `kernels` is Hugging Face's (transformers imports it), `bench` and `tests` are common."""
    regular = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists())
    assert regular == ["fastdapo"], regular
