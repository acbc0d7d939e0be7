"""The package list in pyproject.toml is written by hand (the kernels import under another name than
their folder): every package folder must be in it, or an installed copy would miss that package."""

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
        if "__pycache__" not in p.parts
    }
    assert found <= dirs, sorted(found - dirs)
    assert setup["package-dir"]["fastdapo_kernels"] == "kernels" and "kernels" not in listed
