"""Crisis resources per locale: shipped defaults, replaced or extended by `[safety.resources]`.

Every locale lists its emergency number and at least one crisis line, so a crisis reply always has
somewhere concrete to send a person. Operators should review these for their region;
`/health/detailed` shows the locale in use under `agents`.
"""

from __future__ import annotations

from collections.abc import Mapping

from appliance.config.schema import CrisisCategory, CrisisResource, SafetyConfig
from appliance.errors import BadRequest, ConfigError

_ABUSE: tuple[CrisisCategory, ...] = ("abuse",)

DEFAULT_RESOURCES: dict[str, tuple[CrisisResource, ...]] = {
    "en-US": (
        CrisisResource(name="Emergency services", contact="Call 911", hours="24/7"),
        CrisisResource(
            name="988 Suicide & Crisis Lifeline",
            contact="Call or text 988",
            url="https://988lifeline.org",
        ),
        CrisisResource(name="Crisis Text Line", contact="Text HOME to 741741"),
        CrisisResource(
            name="National Domestic Violence Hotline",
            contact="Call 1-800-799-7233 or text START to 88788",
            url="https://www.thehotline.org",
            categories=_ABUSE,
        ),
        CrisisResource(
            name="Childhelp National Child Abuse Hotline",
            contact="Call or text 1-800-422-4453",
            categories=_ABUSE,
        ),
    ),
    "en-CA": (
        CrisisResource(name="Emergency services", contact="Call 911"),
        CrisisResource(
            name="9-8-8 Suicide Crisis Helpline", contact="Call or text 988", url="https://988.ca"
        ),
        CrisisResource(
            name="Kids Help Phone", contact="Call 1-800-668-6868 or text CONNECT to 686868"
        ),
    ),
    "en-GB": (
        CrisisResource(name="Emergency services", contact="Call 999"),
        CrisisResource(
            name="Samaritans", contact="Call 116 123 (free)", url="https://www.samaritans.org"
        ),
        CrisisResource(name="Shout", contact="Text SHOUT to 85258"),
        CrisisResource(
            name="National Domestic Abuse Helpline",
            contact="Call 0808 2000 247 (free)",
            categories=_ABUSE,
        ),
        CrisisResource(name="Childline", contact="Call 0800 1111 (free)", categories=_ABUSE),
    ),
    "en-IE": (
        CrisisResource(name="Emergency services", contact="Call 112 or 999"),
        CrisisResource(
            name="Samaritans Ireland",
            contact="Call 116 123 (free)",
            url="https://www.samaritans.org",
        ),
        CrisisResource(name="Pieta", contact="Call 1800 247 247 or text HELP to 51444"),
        CrisisResource(name="Text 50808", contact="Text HELLO to 50808"),
        CrisisResource(name="Women's Aid", contact="Call 1800 341 900 (free)", categories=_ABUSE),
    ),
    "en-AU": (
        CrisisResource(name="Emergency services", contact="Call 000"),
        CrisisResource(
            name="Lifeline",
            contact="Call 13 11 14 or text 0477 13 11 14",
            url="https://www.lifeline.org.au",
        ),
        CrisisResource(name="Kids Helpline", contact="Call 1800 55 1800"),
        CrisisResource(name="1800RESPECT", contact="Call 1800 737 732", categories=_ABUSE),
    ),
    "en-NZ": (
        CrisisResource(name="Emergency services", contact="Call 111"),
        CrisisResource(name="Need to talk? 1737", contact="Call or text 1737"),
        CrisisResource(name="Lifeline Aotearoa", contact="Call 0800 543 354"),
    ),
}


class Resources:
    """The resources for each locale this deployment knows, checked once at start."""

    def __init__(self, safety: SafetyConfig, *, source: str = "models.toml") -> None:
        self._by_locale: dict[str, tuple[CrisisResource, ...]] = {
            **DEFAULT_RESOURCES,
            **safety.resources,
        }
        for locale, listed in self._by_locale.items():
            if not listed:
                raise ConfigError(
                    source, f"safety.resources.{locale}", "at least one crisis resource"
                )
        if safety.locale not in self._by_locale:
            raise ConfigError(
                source,
                "safety.locale",
                f"a locale with crisis resources ({', '.join(sorted(self._by_locale))}), "
                "or resources for it under [safety.resources]",
                got=repr(safety.locale),
            )
        self.default_locale = safety.locale

    @property
    def locales(self) -> Mapping[str, tuple[CrisisResource, ...]]:
        return self._by_locale

    def locale(self, requested: str | None) -> str:
        """The requested locale if known (exact, then by language-region case-insensitively),
        else the deployment's."""
        if not requested:
            return self.default_locale
        if requested in self._by_locale:
            return requested
        wanted = requested.replace("_", "-").lower()
        for known in self._by_locale:
            if known.lower() == wanted:
                return known
        return self.default_locale

    def require(self, requested: str | None) -> None:
        """Refuse a locale without crisis resources (a 400 listing the known ones): answering with
        another country's helplines would be worse than saying so."""
        wanted = (requested or "").replace("_", "-").lower()
        if requested and not any(known.lower() == wanted for known in self._by_locale):
            raise BadRequest(
                f"Unknown locale {requested!r}; known: {', '.join(sorted(self._by_locale))}.",
                param="locale",
                code="unknown_locale",
            )

    def for_categories(
        self, locale: str, categories: tuple[CrisisCategory, ...] | list[CrisisCategory]
    ) -> list[CrisisResource]:
        """General resources first, then those for the categories found; never empty."""
        listed = self._by_locale[locale]
        general = [r for r in listed if not r.categories]
        specific = [r for r in listed if set(r.categories) & set(categories)]
        return general + specific or list(listed)
