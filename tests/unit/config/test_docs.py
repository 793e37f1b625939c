"""docs/configuration.md is generated from the settings table."""

from __future__ import annotations

from pathlib import Path

from tricorn.config import FIELDS
from tricorn.config.docs import render

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_committed_reference_is_up_to_date():
    assert DOC.read_text() == render(), (
        "regenerate: python -m tricorn.config.docs > docs/configuration.md"
    )


def test_every_setting_flag_and_env_var_is_documented():
    text = render()
    for field in FIELDS:
        assert f"| `{field.key}` |" in text
        assert f"`{field.env}`" in text
        assert all(f"`{flag}`" in text for flag in field.flags)


def test_every_setting_is_wired():
    """The status column says "yes" for every setting: none is accepted and
    then ignored."""
    rows = [line for line in render().splitlines() if line.startswith("| `")]
    assert len(rows) == len(FIELDS)
    assert all(row.endswith("| yes |") for row in rows)
