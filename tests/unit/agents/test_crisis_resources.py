"""Crisis resources per locale: shipped, configured, and refused when missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.agents.resources import DEFAULT_RESOURCES, Resources
from appliance.config.schema import CrisisResource, SafetyConfig
from appliance.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_every_shipped_locale_has_an_emergency_number_and_a_crisis_line() -> None:
    for locale, listed in DEFAULT_RESOURCES.items():
        general = [r for r in listed if not r.categories]
        assert any(r.name == "Emergency services" for r in general), locale
        assert len(general) >= 2, locale


def test_shipped_numbers_for_the_main_locales() -> None:
    contacts = {loc: " ".join(r.contact for r in rs) for loc, rs in DEFAULT_RESOURCES.items()}
    assert "988" in contacts["en-US"] and "988" in contacts["en-CA"]
    assert "116 123" in contacts["en-GB"] and "116 123" in contacts["en-IE"]
    assert "13 11 14" in contacts["en-AU"]


def test_abuse_lines_only_for_abuse() -> None:
    resources = Resources(SafetyConfig())
    suicide = resources.for_categories("en-US", ["suicide"])
    abuse = resources.for_categories("en-US", ["abuse"])
    assert not any(r.categories for r in suicide)
    assert any("Domestic Violence" in r.name for r in abuse)
    assert abuse[: len(suicide)] == suicide  # general lines first


def test_locale_choice_falls_back_to_the_deployment_locale() -> None:
    resources = Resources(SafetyConfig(locale="en-GB"))
    assert resources.locale(None) == "en-GB"
    assert resources.locale("en_au") == "en-AU"
    assert resources.locale("fr-FR") == "en-GB"


def test_configured_resources_replace_and_add_locales() -> None:
    line = CrisisResource(name="Local line", contact="Call 555")
    resources = Resources(
        SafetyConfig(locale="xx-YY", resources={"xx-YY": (line,), "en-US": (line,)})
    )
    assert resources.for_categories("xx-YY", ["suicide"]) == [line]
    assert resources.for_categories("en-US", ["abuse"]) == [line]


def test_a_locale_without_resources_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"safety\.locale.*fr-FR"):
        Resources(SafetyConfig(locale="fr-FR"), source="models.toml")
    with pytest.raises(ConfigError, match=r"safety\.resources\.en-US"):
        Resources(SafetyConfig(resources={"en-US": ()}))


def test_resources_from_models_toml(tmp_path: Path) -> None:
    from appliance.config import load_config

    text = (ROOT / "models.toml").read_text().replace('locale = "en-US"', 'locale = "en-ZA"', 1)
    text = text.replace(
        "cache_size = 1024\n",
        'cache_size = 1024\n[[safety.resources."en-ZA"]]\nname = "SADAG"\n'
        'contact = "Call 0800 567 567"\n',
        1,
    )
    path = tmp_path / "models.toml"
    path.write_text(text)
    safety = load_config(path, env={}).safety
    resources = Resources(safety)
    assert [r.name for r in resources.for_categories("en-ZA", ["suicide"])] == ["SADAG"]
