import dataclasses
from pathlib import Path

from fastdapo.config.reference import reference_markdown
from fastdapo.config.schema import Config

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_reference_lists_every_key_with_its_help():
    table = reference_markdown()
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory()):
            assert f"`{section.name}.{f.name}`" in table
            assert f.metadata.get("help"), f"{section.name}.{f.name} has no help text"


def test_readme_reference_is_current():
    assert reference_markdown() in README, "regenerate with: python -m fastdapo.config.reference"
