"""Options dataclasses that round-trip through plain dicts (config files, JSON bodies, CLI overrides).

:class:`DictOptions` gives a frozen options dataclass ``to_dict`` and a ``from_dict`` that refuses
unknown keys with a message listing the known ones, so a typo in a config file is an error, not a
silently ignored setting.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, Self


class DictOptions:
    """Mixin for an options dataclass; ``OPTIONS_NAME`` names the options in error messages."""

    OPTIONS_NAME: ClassVar[str] = "option"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.OPTIONS_NAME} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)
