import dataclasses
from pathlib import Path

from fastdapo.config.reference import reference_markdown
from fastdapo.config.schema import Config

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_reference_lists_every_key_with_its_help():
    table = reference_markdown()

    def leaves(obj, prefix):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = prefix + f.name
            yield from leaves(value, key + ".") if dataclasses.is_dataclass(value) else [(key, f)]

    for key, f in leaves(Config(), ""):
        assert f"`{key}`" in table
        assert f.metadata.get("help"), f"{key} has no help text"
    assert "`model.lora.rank`" in table


def test_readme_reference_is_current():
    assert reference_markdown() in README, "regenerate with: python -m fastdapo.config.reference"
