"""Where the sun is: elevation per quarter-hour and sunrise/noon/sunset per local day (astral).

Daylight is "sun above the horizon" with the usual refraction correction (elevation > -0.833 deg,
the same definition astral uses for sunrise and sunset), evaluated at the middle of each quarter-hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from astral import Observer
from astral.sun import elevation, sun

from analytics_service.timeseries import QUARTER_HOUR, local_naive

HORIZON_DEG = -0.833


@dataclass(frozen=True)
class Site:
    name: str
    latitude: float
    longitude: float

    @property
    def observer(self) -> Observer:
        return Observer(latitude=self.latitude, longitude=self.longitude)

    def describe(self) -> str:
        north = "N" if self.latitude >= 0 else "S"
        east = "E" if self.longitude >= 0 else "W"
        return f"{self.name} ({abs(self.latitude):.4f} {north}, {abs(self.longitude):.4f} {east})"


def elevations(index: pd.DatetimeIndex, site: Site) -> np.ndarray:
    """Sun elevation in degrees at the middle of each quarter-hour starting at `index` (UTC)."""
    observer = site.observer
    middles = index + QUARTER_HOUR / 2
    return np.array([elevation(observer, ts.to_pydatetime()) for ts in middles], dtype=float)


def _clock_hours(moment: datetime) -> float:
    return moment.hour + moment.minute / 60 + moment.second / 3600


def sun_times(index: pd.DatetimeIndex, site: Site, tz: str) -> pd.DataFrame:
    """Per local date of `index`: sunrise, solar noon and sunset as local clock hours (NaN when the sun
    does not rise or set that day)."""
    zone = ZoneInfo(tz)
    observer = site.observer
    rows = []
    for day in sorted(set(local_naive(index, tz).date)):
        try:
            times = sun(observer, date=day, tzinfo=zone)
            rows.append((day, *(_clock_hours(times[k]) for k in ("sunrise", "noon", "sunset"))))
        except ValueError:  # polar day or night
            rows.append((day, np.nan, np.nan, np.nan))
    frame = pd.DataFrame(rows, columns=["date", "sunrise", "noon", "sunset"])
    return frame.set_index("date")
