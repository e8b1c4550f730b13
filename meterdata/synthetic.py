"""Deterministic synthetic meter data: household import loads and photovoltaic export, streamed.

N meters x D days of 15-minute readings, generated one (meter, channel, block of days) at a time
from a seed, so a year of a thousand meters never sits in memory. The shapes are plausible, not
calibrated: a household base load with morning and evening peaks and random spikes, and a PV bell
between a sunrise and sunset that follow the season at about 47 degrees north, dimmed by daily clouds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

IMPORT_OBIS = "0100011D00FF"
EXPORT_OBIS = "0100021D00FF"
QUARTERS_PER_DAY = 96
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Block:
    muid: str
    obis: str
    ts: np.ndarray  # int64 Unix seconds of the period starts
    values: np.ndarray  # float64 kWh per quarter-hour


def meter_id(seed: int, index: int) -> str:
    """Stable UUIDs: the same seed and index always name the same meter."""
    return str(uuid.UUID(int=(seed << 64 | index) & ((1 << 128) - 1), version=4))


def household_load(rng: np.random.Generator, day_of_year: np.ndarray, quarter: np.ndarray) -> np.ndarray:
    hour = quarter / 4
    base = rng.uniform(0.02, 0.06)
    morning = 0.10 * np.exp(-((hour - 7.5) ** 2) / 1.5)
    evening = 0.18 * np.exp(-((hour - 19.0) ** 2) / 3.0)
    winter = 1 + 0.3 * np.cos(2 * np.pi * (day_of_year - 15) / 365)
    noise = rng.gamma(4, 0.005, size=quarter.shape)
    spikes = (rng.random(quarter.shape) < 0.02) * rng.uniform(0.2, 0.9, size=quarter.shape)
    return np.round(base + (morning + evening) * winter + noise + spikes, 4)


def pv_export(rng: np.random.Generator, day_of_year: np.ndarray, quarter: np.ndarray, days: int) -> np.ndarray:
    hour = quarter / 4
    half_day = 4.2 + 3.6 * np.sin(2 * np.pi * (day_of_year - 80) / 365)  # hours from solar noon to sunset
    noon = 12.5
    daylight = np.clip(1 - ((hour - noon) / half_day) ** 2, 0, None)
    clouds = np.repeat(rng.uniform(0.2, 1.0, size=days), QUARTERS_PER_DAY)
    peak = rng.uniform(0.3, 1.2)
    return np.round(peak * daylight**1.5 * clouds * (1 - 0.1 * rng.random(quarter.shape)), 4)


def generate(
    meters: int, days: int, start: datetime = datetime(2023, 1, 1, tzinfo=UTC), seed: int = 42,
    block_days: int = 31, channels: tuple[str, ...] = (IMPORT_OBIS, EXPORT_OBIS),
) -> Iterator[Block]:  # fmt: skip
    """Blocks of at most `block_days` days per meter and channel, meter by meter."""
    origin = int(start.timestamp())
    start_day_of_year = start.timetuple().tm_yday
    for index in range(meters):
        muid = meter_id(seed, index)
        rng = np.random.default_rng([seed, index])
        for first_day in range(0, days, block_days):
            span = min(block_days, days - first_day)
            steps = np.arange(first_day * QUARTERS_PER_DAY, (first_day + span) * QUARTERS_PER_DAY, dtype=np.int64)
            quarter = steps % QUARTERS_PER_DAY
            day_of_year = (start_day_of_year + steps // QUARTERS_PER_DAY) % 365
            ts = origin + steps * 900
            for obis in channels:
                values = (
                    household_load(rng, day_of_year, quarter)
                    if obis == IMPORT_OBIS
                    else pv_export(rng, day_of_year, quarter, span)
                )
                yield Block(muid, obis, ts, values)
