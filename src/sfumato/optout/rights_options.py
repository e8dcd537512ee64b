"""What the "do not train" rights metadata says: the IPTC/PLUS data-mining vocabulary, the validated
:class:`RightsOptions` and their config file (``~/.config/sfumato/rights.toml``).

Vocabulary (public standards): the IPTC Photo Metadata Standard 2023.1+ "Data Mining" property, whose
value is a PLUS Coalition LDF vocabulary URI (``http://ns.useplus.org/ldf/vocab/DMI-...``), with free
text in "Other Constraints" when the value points to it. The default text states a text-and-data-mining
reservation in the sense of Article 4(3) of Directive (EU) 2019/790 (DSM Directive): a rights
reservation "in an appropriate manner, such as machine-readable means".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sfumato.optout.dict_options import DictOptions

DATA_MINING_VALUES: tuple[str, ...] = (
    "DMI-UNSPECIFIED",
    "DMI-ALLOWED",
    "DMI-PROHIBITED-AIMLTRAINING",
    "DMI-PROHIBITED-GENAIMLTRAINING",
    "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
    "DMI-PROHIBITED",
    "DMI-PROHIBITED-SEECONSTRAINT",
    "DMI-PROHIBITED-SEEEMBEDDEDRIGHTSEXPR",
)
PLUS_VOCAB = "http://ns.useplus.org/ldf/vocab/"

DEFAULT_OTHER_CONSTRAINTS = (
    "No AI/ML training: the rightsholder expressly reserves this work from text and data mining, "
    "including use to train, fine-tune or evaluate artificial-intelligence or machine-learning models "
    "(reservation under Article 4(3) of Directive (EU) 2019/790, the EU DSM Directive). Any such use "
    "requires a separate written licence from the rightsholder."
)

# characters XML 1.0 cannot carry (even escaped): C0 controls except TAB/LF/CR, surrogates, U+FFFE/FFFF
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _check_xml_text(name: str, value: str) -> None:
    m = _XML_FORBIDDEN.search(value)
    if m:
        raise ValueError(
            f"{name} contains the character U+{ord(m.group()):04X}, which XML (and so XMP) cannot store; "
            "remove control characters from the text"
        )


@dataclass(frozen=True, kw_only=True)
class RightsOptions(DictOptions):
    """What the embedded rights metadata says.

    ``data_mining`` is one of the IPTC/PLUS values in :data:`DATA_MINING_VALUES` (the bare code, e.g.
    ``"DMI-PROHIBITED-AIMLTRAINING"``; the full vocabulary URI is accepted too). Empty
    ``other_constraints`` leaves that property untouched; ``None`` for the optional fields leaves any
    existing value in the file untouched.
    """

    OPTIONS_NAME: ClassVar[str] = "rights"

    data_mining: str = "DMI-PROHIBITED-AIMLTRAINING"
    other_constraints: str = DEFAULT_OTHER_CONSTRAINTS
    creator: str | None = None
    copyright_notice: str | None = None
    web_statement: str | None = None

    def __post_init__(self) -> None:
        dm = self.data_mining
        if isinstance(dm, str) and dm.startswith(PLUS_VOCAB):
            object.__setattr__(self, "data_mining", dm[len(PLUS_VOCAB):])
            dm = self.data_mining
        if dm not in DATA_MINING_VALUES:
            raise ValueError(
                f"data_mining={dm!r} is not an IPTC PLUS data-mining value; use one of "
                f"{', '.join(DATA_MINING_VALUES)} (default DMI-PROHIBITED-AIMLTRAINING)"
            )
        if not isinstance(self.other_constraints, str):
            raise TypeError(f"other_constraints must be a string, got {type(self.other_constraints).__name__}")
        if dm == "DMI-PROHIBITED-SEECONSTRAINT" and not self.other_constraints.strip():
            raise ValueError(
                "data_mining=DMI-PROHIBITED-SEECONSTRAINT points readers to other_constraints, which is empty; "
                "write the constraint text in other_constraints"
            )
        _check_xml_text("other_constraints", self.other_constraints)
        for name in ("creator", "copyright_notice", "web_statement"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
            _check_xml_text(name, value)
        ws = self.web_statement
        if ws is not None and not re.match(r"^https?://\S+$", ws):
            raise ValueError(
                f"web_statement={ws!r} must be an http(s) URL of a page stating your usage terms, "
                "e.g. https://example.com/terms"
            )

    @property
    def data_mining_uri(self) -> str:
        return PLUS_VOCAB + self.data_mining


def default_rights_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "sfumato" / "rights.toml"


def load_rights_config(path: Path | str | None = None) -> RightsOptions:
    """Read :class:`RightsOptions` from a TOML or JSON file.

    Keys are the field names, either top-level or inside a ``[rights]`` table. With ``path=None`` the
    optional ``~/.config/sfumato/rights.toml`` is read when it exists, else the defaults are returned.
    """
    import json
    import tomllib

    if path is None:
        p = default_rights_config_path()
        if not p.is_file():
            return RightsOptions()
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"rights config {p} does not exist; create it (TOML or JSON) or omit it")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{p} is not valid TOML ({e}); fix it or use a .json file") from e
    if not isinstance(data, dict):
        raise ValueError(f"{p} must hold a table/object of rights options, got {type(data).__name__}")
    if "rights" in data and isinstance(data["rights"], dict):
        data = data["rights"]
    return RightsOptions.from_dict(data)
