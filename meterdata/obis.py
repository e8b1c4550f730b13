"""The OBIS codes meterdata understands: what each channel measures, its direction and unit.

Upstream payloads name the value by the OBIS code in hex (6 bytes A-B:C.D.E*F). Sources: Leneda
"OBIS code meaning" (leneda.eu/en/docs/obis-code-meaning) and the German Wikipedia article
"OBIS-Kennzahlen". C=1 is active power/energy import (+A), C=2 active export (-A), C=3/4 reactive;
D=29 is "energy delta over a capture period", i.e. the energy of each 15-minute period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["import", "export"]


@dataclass(frozen=True)
class ObisCode:
    code: str  # hex as delivered upstream
    notation: str  # IEC 62056-61 text form
    name: str
    direction: Direction
    unit: str
    reactive: bool = False


def hex_to_notation(code: str) -> str:
    """'0100011D00FF' -> '1-0:1.29.0*255'."""
    a, b, c, d, e, f = (int(code[i : i + 2], 16) for i in range(0, 12, 2))
    return f"{a}-{b}:{c}.{d}.{e}*{f}"


def _entry(code: str, name: str, direction: Direction, unit: str, reactive: bool = False) -> ObisCode:
    return ObisCode(code, hex_to_notation(code), name, direction, unit, reactive)


OBIS_CATALOGUE: dict[str, ObisCode] = {
    entry.code: entry
    for entry in (
        _entry("0100011D00FF", "Active energy import (+A) per period", "import", "kWh"),
        _entry("0100021D00FF", "Active energy export (-A) per period", "export", "kWh"),
        _entry("0100031D00FF", "Reactive energy import (+R) per period", "import", "kvarh", reactive=True),
        _entry("0100041D00FF", "Reactive energy export (-R) per period", "export", "kvarh", reactive=True),
    )
}


def lookup(code: str) -> ObisCode | None:
    return OBIS_CATALOGUE.get(code.upper())


def is_obis_key(key: str) -> bool:
    """Whether a record key has the shape of a hex OBIS code (12 hex digits), known or not."""
    return len(key) == 12 and all(ch in "0123456789abcdefABCDEF" for ch in key)
