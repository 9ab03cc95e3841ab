"""The documentation that must not drift from the code."""

from __future__ import annotations

from conftest import REPO
from recsys_spark.config import Config
from recsys_spark.config_reference import reference
from recsys_spark.core.registry import RECIPES


def test_the_configuration_reference_matches_the_config_classes():
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == reference(), ("docs/configuration.md is out of date: run "
                                      "`python -m recsys_spark.config_reference > docs/configuration.md`")
    for key in Config.model_fields:
        assert f"| `{key}` |" in committed
    for recipe in RECIPES.values():
        for key in recipe.settings.model_fields:
            assert f"| `{key}` |" in committed, key


def test_the_readme_lists_every_command():
    from recsys_spark.cli import cli

    readme = (REPO / "README.md").read_text()
    for name in cli.commands:
        assert f"`{name}" in readme, name
