"""The dashboard end to end in headless Chromium (Debian's `chromium`, driven by Playwright; no browser is
downloaded): the whole topology as `make run` starts it, both published meters seeded from the raw JSON.

Every number the page shows is compared twice: with the API's answer to the same question, and with a
value computed here from the raw published JSON (pure Python, no project code). Screenshots go to
`test-artifacts/dashboard/`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine

from meterdata.runner import Topology
from tests.seed import EXPORT_MUID, EXPORT_OBIS, IMPORT_MUID, IMPORT_OBIS, published_points, seed_published

CHROMIUM = next(
    (
        path
        for path in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium")
        if path and os.access(path, os.X_OK)
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary: install Debian's package (apt-get install chromium; .ci/run does) — no browser is downloaded",
)
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402  (after the skip mark on purpose)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
ZURICH = ZoneInfo("Europe/Zurich")
FEBRUARY = {"start": "2023-02-01", "end": "2023-03-01", "interval": "day", "agg": "sum", "tz": "Europe/Zurich"}
METERS = {IMPORT_MUID: IMPORT_OBIS, EXPORT_MUID: EXPORT_OBIS}
TIMEOUT_MS = 20_000


# ---------------------------------------------------------------- expected values from the raw JSON


def february_points(muid: str) -> list[tuple[datetime, float]]:
    """The published readings whose quarter-hour starts in February 2023, Zurich local time."""
    _, points = published_points(muid)
    return sorted(
        (ts, value) for ts, value in points if date(2023, 2, 1) <= ts.astimezone(ZURICH).date() < date(2023, 3, 1)
    )


def daily_sums(muid: str) -> list[tuple[date, float, int]]:
    sums: dict[date, float] = defaultdict(float)
    counts: dict[date, int] = defaultdict(int)
    for ts, value in february_points(muid):
        day = ts.astimezone(ZURICH).date()
        sums[day] += value
        counts[day] += 1
    return [(day, sums[day], counts[day]) for day in sorted(sums)]


def grouped_means(muid: str, key: Any) -> dict[Any, float]:
    groups: dict[Any, list[float]] = defaultdict(list)
    for ts, value in february_points(muid):
        groups[key(ts.astimezone(ZURICH))].append(value)
    return {k: sum(v) / len(v) for k, v in groups.items()}


def hourly_acf(muid: str, nlags: int) -> tuple[int, list[float]]:
    """(observations, ACF at lags 1..nlags) of the hourly sums, by the textbook formula."""
    hours: dict[datetime, float] = defaultdict(float)
    for ts, value in february_points(muid):
        hours[ts.replace(minute=0)] += value
    series = [hours[h] for h in sorted(hours)]
    mean = sum(series) / len(series)
    centred = [x - mean for x in series]
    denominator = sum(c * c for c in centred)
    acf = [sum(centred[t] * centred[t + k] for t in range(len(centred) - k)) / denominator for k in range(1, nlags + 1)]
    return len(series), acf


def js_fixed(value: float, digits: int) -> str:
    """What JavaScript's `value.toFixed(digits)` prints for a non-negative value (ties away from zero)."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=ZURICH).astimezone(UTC).timestamp()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack(database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    seed_published(engine)
    topology = Topology.on_free_ports(database_url, tmp_path_factory.mktemp("dashboard-logs"), {"LOG_LEVEL": "WARNING"})
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="module")
def api(stack: Topology) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, headers=stack.auth_headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def open_page(browser: Browser, stack: Topology, width: int, query: str = "") -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{stack.gateway_url}/{query}#key={stack.api_key}")  # the page keeps the key, drops the fragment
    return page, errors


@pytest.fixture
def wide(browser: Browser, stack: Topology) -> Iterator[Page]:
    page, errors = open_page(browser, stack, 1280)
    yield page
    page.context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def wait_for(page: Page, name: str, expected: str = "ready") -> None:
    """Wait until the panel `name` has finished loading, then insist on `expected` (with the error shown if not)."""
    page.wait_for_function("n => ['ready', 'error'].includes(window.dashboard?.state?.[n])", arg=name)
    state = page.evaluate("n => window.dashboard.state[n]", name)
    assert state == expected, page.evaluate("n => window.dashboard.errors[n]", name)


def show(page: Page, muid: str, **params: str) -> None:
    """Use the controls as a person would: pick the meter, type the dates and zone, choose, press Show."""
    params = {**FEBRUARY, **params}
    page.wait_for_function("() => window.dashboard?.meters?.length > 0")
    page.select_option("#meter", muid)
    page.fill("#start", params["start"])
    page.fill("#end", params["end"])
    page.select_option("#interval", params["interval"])
    page.select_option("#agg", params["agg"])
    page.fill("#tz", params["tz"])
    page.click("#apply")
    page.wait_for_function(
        "p => window.dashboard.params.muid === p.muid && window.dashboard.params.start === p.start"
        " && window.dashboard.params.end === p.end && window.dashboard.state.series !== 'loading'",
        arg={"muid": muid, **params},
    )


def card_values(page: Page, selector: str) -> dict[str, str]:
    """The cards of a <dl> as {term: value text without its note}."""
    return page.evaluate(
        """s => Object.fromEntries([...document.querySelectorAll(s + ' > div')].map(d => [
            d.querySelector('dt').textContent,
            d.querySelector('dd').firstChild.textContent.trim()]))""",
        selector,
    )


def series_path(muid: str) -> str:
    return f"/api/v1/meters/{muid}/series"


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("muid", [IMPORT_MUID, EXPORT_MUID])
def test_february_daily_series_equals_the_api_and_the_raw_json(wide: Page, api: httpx.Client, muid: str) -> None:
    obis = METERS[muid]
    show(wide, muid)
    wait_for(wide, "series")
    query = {"obis": obis, **FEBRUARY}
    answer = api.get(series_path(muid), params=query).json()
    expected = daily_sums(muid)

    # the page holds exactly the API's answer, and that answer matches the raw JSON
    assert wide.evaluate("window.dashboard.series") == answer
    assert [b["start"][:10] for b in answer["buckets"]] == [d.isoformat() for d, _, _ in expected]
    assert [b["value"] for b in answer["buckets"]] == pytest.approx([s for _, s, _ in expected], abs=1e-9)
    assert [b["count"] for b in answer["buckets"]] == [n for _, _, n in expected]

    # the chart draws those numbers: bucket starts at local midnight, the last bucket's end closes the axis
    xs, values = wide.evaluate("window.dashboard.chartData('series-chart')")
    assert xs[:-1] == [epoch(d) for d, _, _ in expected]
    assert xs[-1] == epoch(date(2023, 3, 1))
    assert values[:-1] == [b["value"] for b in answer["buckets"]] and values[-1] is None

    # zoom and pan change the visible range within the data; reset shows it all again
    full = wide.evaluate("window.dashboard.chartScale('series-chart')")
    assert (full["min"], full["max"]) == (xs[0], xs[-1])
    wide.click("[data-zoom=in]")
    zoomed = wide.evaluate("window.dashboard.chartScale('series-chart')")
    assert zoomed["max"] - zoomed["min"] == pytest.approx((full["max"] - full["min"]) / 2)
    wide.focus("#series-chart")
    wide.keyboard.press("ArrowLeft")
    panned = wide.evaluate("window.dashboard.chartScale('series-chart')")
    assert panned["min"] < zoomed["min"] and panned["max"] - panned["min"] == pytest.approx(
        zoomed["max"] - zoomed["min"]
    )
    wide.keyboard.press("0")
    assert wide.evaluate("window.dashboard.chartScale('series-chart')") == full

    # the data table and the cards show them, rounded for reading
    cells = wide.eval_on_selector_all(
        "#series-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert len(cells) == 28
    for row, bucket in zip(cells, answer["buckets"], strict=True):
        assert row[0] == bucket["start"][:10] + " 00:00 +01:00"
        assert row[2:] == [js_fixed(bucket["value"], 4), str(bucket["count"]), str(bucket["expected"])]
    total = sum(s for _, s, _ in expected)
    page_total = wide.evaluate("window.dashboard.totals.total")
    assert page_total == pytest.approx(total, abs=1e-9)
    assert page_total == pytest.approx(sum(b["value"] for b in answer["buckets"]), abs=1e-12)
    cards = card_values(wide, "#totals")
    assert cards["Total in range"] == f"{js_fixed(page_total, 4)} kWh"
    # Feb 1, 00:00-01:00 local time is before the first reading
    assert cards["Readings"] == str(sum(n for _, _, n in expected)) == "2684"
    # the display rounds the API's value: a sum like 4.36925 may round either way depending on the order of addition
    largest = max(b["value"] for b in answer["buckets"])
    assert largest == pytest.approx(max(s for _, s, _ in expected), abs=1e-9)
    assert cards["Largest sum"] == f"{js_fixed(largest, 4)} kWh"
    caption = wide.inner_text("#series-caption")
    assert "in kWh" in caption and "local time Europe/Zurich" in caption
    wide.screenshot(path=str(ARTIFACTS / f"series-{muid[:8]}-1280.png"), full_page=True)

    # the CSV download is the API's CSV of what is shown
    with wide.expect_download() as info:
        wide.click("#csv-link")
    download = info.value
    api_csv = api.get(series_path(muid), params={**query, "format": "csv"})
    assert Path(download.path()).read_bytes() == api_csv.content
    assert download.suggested_filename == f"{muid}_{obis}_day_sum.csv"
    rows = list(csv.DictReader(io.StringIO(api_csv.text)))
    assert [float(r["value_kWh"]) for r in rows] == pytest.approx([s for _, s, _ in expected], abs=1e-9)


@pytest.mark.parametrize("muid", [IMPORT_MUID, EXPORT_MUID])
def test_profile_and_autocorrelation_views(wide: Page, api: httpx.Client, muid: str) -> None:
    show(wide, muid)
    wait_for(wide, "series")
    range_ = {"obis": METERS[muid], "start": "2023-02-01", "end": "2023-03-01", "tz": "Europe/Zurich"}

    wide.click("#tab-profiles")
    wait_for(wide, "profiles")
    assert wide.is_visible("#panel-profiles") and not wide.is_visible("#panel-series")
    profiles = wide.evaluate("window.dashboard.profiles")
    for kind in ("hour_of_day", "day_of_week", "hour_by_weekday"):
        assert profiles[kind] == api.get(f"/api/v1/meters/{muid}/profile", params={**range_, "kind": kind}).json()
    by_hour = grouped_means(muid, lambda local: local.hour)
    assert [g["mean"] for g in profiles["hour_of_day"]["groups"]] == pytest.approx(
        [by_hour[h] for h in range(24)], abs=1e-12
    )
    by_weekday = grouped_means(muid, lambda local: local.isoweekday())
    assert [g["mean"] for g in profiles["day_of_week"]["groups"]] == pytest.approx(
        [by_weekday[d] for d in range(1, 8)], abs=1e-12
    )
    _, hour_means = wide.evaluate("window.dashboard.chartData('hour-chart')")[:2]
    assert hour_means == [g["mean"] for g in profiles["hour_of_day"]["groups"]]
    by_cell = grouped_means(muid, lambda local: (local.isoweekday(), local.hour))
    cells = {(g["weekday"], g["hour"]): g["mean"] for g in profiles["hour_by_weekday"]["groups"]}
    assert cells == pytest.approx(by_cell, abs=1e-12)
    heatmap = wide.eval_on_selector_all(
        "#heatmap tbody tr", "rows => rows.map(r => [...r.cells].slice(1).map(c => c.textContent))"
    )
    assert heatmap == [[js_fixed(cells[(day, hour)], 3) for hour in range(24)] for day in range(1, 8)]
    wide.screenshot(path=str(ARTIFACTS / f"profiles-{muid[:8]}-1280.png"), full_page=True)

    wide.click("#tab-acf")
    wait_for(wide, "acf")
    acf = wide.evaluate("window.dashboard.acf")
    assert acf == api.get(f"/api/v1/meters/{muid}/autocorrelation", params={**range_, "interval": "hour"}).json()
    observations, expected_acf = hourly_acf(muid, len(acf["lags"]))
    assert acf["observations"] == observations == 671  # the first local hour of February has no reading
    assert [lag["acf"] for lag in acf["lags"]] == pytest.approx(expected_acf, abs=1e-9)
    assert acf["confidence_band"] == pytest.approx(1.959963984540054 / math.sqrt(observations), rel=1e-9)
    lags, values, upper, lower = wide.evaluate("window.dashboard.chartData('acf-chart')")
    assert lags == [lag["lag"] for lag in acf["lags"]] and values == [lag["acf"] for lag in acf["lags"]]
    assert set(upper) == {acf["confidence_band"]} and set(lower) == {-acf["confidence_band"]}
    assert wide.evaluate("window.dashboard.chartData('pacf-chart')")[1] == [lag["pacf"] for lag in acf["lags"]]
    assert f"±{acf['confidence_band']:.4f}" in wide.inner_text("#acf-info")
    wide.screenshot(path=str(ARTIFACTS / f"acf-{muid[:8]}-1280.png"), full_page=True)


def test_explanation_balance_and_ingest_runs(wide: Page, api: httpx.Client) -> None:
    show(wide, EXPORT_MUID)
    wait_for(wide, "series")
    range_ = {"obis": EXPORT_OBIS, "start": "2023-02-01", "end": "2023-03-01", "tz": "Europe/Zurich"}

    wide.click("#tab-explain")
    wait_for(wide, "explain")
    wait_for(wide, "summary")
    explanation = api.get(f"/api/v1/meters/{EXPORT_MUID}/explain", params=range_).json()
    assert wide.evaluate("window.dashboard.explanation") == explanation
    assert explanation["classification"] == "photovoltaic_export"
    assert wide.inner_text("#explain-headline") == explanation["headline"]
    assert wide.locator("#explain-evidence tbody tr").count() == len(explanation["evidence"]) > 0
    summary = api.get(f"/api/v1/meters/{EXPORT_MUID}/summary", params=range_).json()
    assert wide.evaluate("window.dashboard.summary") == summary
    export_total = sum(v for _, v in february_points(EXPORT_MUID))
    assert summary["total"] == pytest.approx(export_total, abs=1e-9)
    assert card_values(wide, "#summary")["Total"] == f"{js_fixed(summary['total'], 4)} kWh"

    wide.click("#tab-balance")
    wide.select_option("#balance-import", f"{IMPORT_MUID}|{IMPORT_OBIS}")
    wide.select_option("#balance-export", f"{EXPORT_MUID}|{EXPORT_OBIS}")
    wide.click("#balance-form button[type=submit]")
    wait_for(wide, "balance")
    balance = api.get(
        "/api/v1/balance",
        params={
            "import_muid": IMPORT_MUID, "import_obis": IMPORT_OBIS, "export_muid": EXPORT_MUID,
            "export_obis": EXPORT_OBIS, "start": "2023-02-01", "end": "2023-03-01", "tz": "Europe/Zurich", "interval": "day",
        },
    ).json()  # fmt: skip
    assert wide.evaluate("window.dashboard.balance") == balance
    import_total = sum(v for _, v in february_points(IMPORT_MUID))
    assert balance["imported_total"] == pytest.approx(import_total, abs=1e-9)
    assert balance["exported_total"] == pytest.approx(export_total, abs=1e-9)
    cards = card_values(wide, "#balance-totals")
    assert cards["Imported"] == f"{js_fixed(balance['imported_total'], 4)} kWh"
    assert cards["Exported"] == f"{js_fixed(balance['exported_total'], 4)} kWh"
    assert balance["net_import_total"] == pytest.approx(import_total - export_total, abs=1e-9)
    assert cards["Net import"] == f"{js_fixed(balance['net_import_total'], 4)} kWh"
    wide.screenshot(path=str(ARTIFACTS / "balance-1280.png"), full_page=True)

    wide.click("#tab-runs")
    wait_for(wide, "runs")
    runs = api.get("/api/v1/ingest/runs", params={"limit": 20, "tz": "Europe/Zurich"}).json()
    assert wide.evaluate("window.dashboard.runs") == runs
    rows = wide.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [row[0] for row in rows] == [str(run["id"]) for run in runs["runs"]]
    assert [row[5:10] for row in rows] == [
        [str(run[k]) for k in ("received", "inserted", "updated", "unchanged", "rejected")] for run in runs["runs"]
    ]


def test_an_api_error_is_shown_with_its_detail(wide: Page, api: httpx.Client) -> None:
    show(wide, IMPORT_MUID, start="2023-02-10", end="2023-02-01")
    wait_for(wide, "series", expected="error")
    problem = api.get(
        series_path(IMPORT_MUID), params={"obis": IMPORT_OBIS, **FEBRUARY, "start": "2023-02-10", "end": "2023-02-01"}
    )
    assert problem.status_code == 400 and problem.headers["content-type"] == "application/problem+json"
    detail = problem.json()["detail"]
    assert detail.startswith("end: must be after start")
    status = wide.locator("#series-status")
    assert status.get_attribute("role") == "alert"
    assert detail in status.inner_text() and "HTTP 400" in status.inner_text()
    assert wide.evaluate("window.dashboard.errors.series") == {
        "status": 400,
        "title": problem.json()["title"],
        "detail": detail,
    }
    assert wide.get_attribute("#csv-link", "aria-disabled") == "true"
    assert wide.locator("#series-table tbody tr").count() == 0
    wide.screenshot(path=str(ARTIFACTS / "error-1280.png"), full_page=True)

    wide.fill("#tz", "Mars/Olympus")  # the zone is checked by the gateway itself
    wide.fill("#start", "2023-02-01")
    wide.fill("#end", "2023-03-01")
    wide.click("#apply")
    wait_for(wide, "series", expected="error")
    assert "tz: unknown time zone 'Mars/Olympus'" in wide.inner_text("#series-status")


def test_narrow_screen_keyboard_and_shared_link(browser: Browser, stack: Topology, api: httpx.Client) -> None:
    query = "?" + "&".join(f"{k}={v}" for k, v in {"muid": IMPORT_MUID, "obis": IMPORT_OBIS, **FEBRUARY}.items())
    page, errors = open_page(browser, stack, 390, query)
    try:
        wait_for(page, "series")
        answer = api.get(series_path(IMPORT_MUID), params={"obis": IMPORT_OBIS, **FEBRUARY}).json()
        assert page.evaluate("window.dashboard.series") == answer
        assert page.input_value("#start") == "2023-02-01" and page.input_value("#tz") == "Europe/Zurich"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways at 390 px"
        chart_width = page.evaluate("document.querySelector('#series-chart canvas').getBoundingClientRect().width")
        assert 280 <= chart_width <= 390
        page.screenshot(path=str(ARTIFACTS / "series-390.png"), full_page=True)

        # every control has a label, and the views are tabs a keyboard can switch
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select')]
                 .filter(e => !e.labels || e.labels.length === 0).map(e => e.id)"""
        )
        assert unlabelled == []
        page.focus("#tab-series")
        page.keyboard.press("ArrowRight")
        assert page.get_attribute("#tab-profiles", "aria-selected") == "true"
        assert page.evaluate("document.activeElement.id") == "tab-profiles"
        wait_for(page, "profiles")
        page.keyboard.press("ArrowRight")
        wait_for(page, "acf")
        assert page.is_visible("#acf-chart") and not page.is_visible("#panel-profiles")
        page.screenshot(path=str(ARTIFACTS / "acf-390.png"), full_page=True)
    finally:
        page.context.close()
    assert errors == []


def test_the_page_asks_for_a_key_shows_the_401_and_keeps_a_good_key(browser: Browser, stack: Topology) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(f"{stack.gateway_url}/")  # a fresh browser: no key stored, none in the address
        wait_for(page, "series", expected="error")
        missing = httpx.get(f"{stack.gateway_url}/api/v1/meters", timeout=30)
        assert missing.status_code == 401
        status = page.inner_text("#series-status")
        assert "HTTP 401" in status and missing.json()["detail"] in status and "Enter an API key" in status
        assert page.evaluate("window.dashboard.errors.series.status") == 401
        assert page.get_attribute("#api-key", "type") == "password"
        page.screenshot(path=str(ARTIFACTS / "no-key-1280.png"), full_page=True)

        page.fill("#api-key", "mdk_000000000000_" + "A" * 43)  # well-formed, unknown
        with page.expect_navigation():
            page.click("#key-form button[type=submit]")
        wait_for(page, "series", expected="error")
        assert "not valid" in page.inner_text("#series-status")

        page.fill("#api-key", stack.api_key)
        with page.expect_navigation():
            page.click("#key-form button[type=submit]")
        wait_for(page, "series")
        assert page.evaluate("localStorage.getItem('meterdata.apiKey')") == stack.api_key
        assert page.input_value("#api-key") == "" and "stored" in page.inner_text("#api-key-state")
    finally:
        context.close()

    # A key handed over in the address (as `make run` prints it) is kept and removed from the address.
    page, errors = open_page(browser, stack, 1280)
    try:
        wait_for(page, "series")
        assert "key" not in page.url and stack.api_key not in page.url
        assert page.evaluate("localStorage.getItem('meterdata.apiKey')") == stack.api_key
    finally:
        page.context.close()
    assert errors == []
