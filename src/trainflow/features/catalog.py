"""The feature catalog: what each feature means, where it comes from, its point-in-time rule
and its expected range, in one place beside the feature functions (features/flights.py).

From it come docs/features.md (`python -m trainflow.features.catalog docs/features.md`;
a test keeps the file equal to it), each
feature table's column descriptions in the UI (`dagster/column_schema`) and the column
lineage from the warehouse's columns to the features (`dagster/column_lineage`).
A feature added to flights.py without an entry here fails a test.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from trainflow.features.flights import (
    ALL_FEATURES,
    DELAY_THRESHOLD_MINUTES,
    LABEL,
    ROLLING_KEYS,
    ROLLING_WINDOWS_DAYS,
    SMOOTHING_FLIGHTS,
)

# Point-in-time rules, named once.
SCHEDULE = "known when the flight is scheduled"
WEATHER = (
    "the origin's latest observation completed strictly before the scheduled departure "
    "(at most 3 hours old)"
)
STATIC = "the plane registry (static)"
PAST_DAYS = "outcomes of the days strictly before the flight's day only"


@dataclass(frozen=True)
class Feature:
    name: str
    meaning: str
    sources: tuple[str, ...]  # columns of validated_flights (= warehouse flights_enriched)
    point_in_time: str
    expected_range: str


def _rolling() -> list[Feature]:
    found = []
    for group, keys in ROLLING_KEYS.items():
        for window in ROLLING_WINDOWS_DAYS:
            over = f"the {window} days before the flight's day, same {' and '.join(keys)}"
            found.append(
                Feature(
                    f"{group}_delay_rate_{window}d",
                    f"Share of arrived flights more than {DELAY_THRESHOLD_MINUTES:g} minutes late "
                    f"over {over}, pulled toward the all-flights rate by {SMOOTHING_FLIGHTS:g} "
                    "pseudo-flights (a group with no history takes that rate).",
                    ("day", *keys, "arr_delay_minutes"),
                    PAST_DAYS,
                    "0 .. 1",
                )
            )
            found.append(
                Feature(
                    f"{group}_flights_{window}d",
                    f"Arrived flights over {over} (what the rate rests on).",
                    ("day", *keys, "arr_delay_minutes"),
                    PAST_DAYS,
                    ">= 0",
                )
            )
    return found


CATALOG: dict[str, Feature] = {
    f.name: f
    for f in [
        Feature("month", "Month of the flight's day (1 = January).", ("day",), SCHEDULE, "1 .. 12"),
        Feature(
            "day_of_week",
            "Day of the week of the flight's day (1 = Monday .. 7 = Sunday).",
            ("day",),
            SCHEDULE,
            "1 .. 7",
        ),
        Feature(
            "sched_dep_hour",
            "Scheduled departure hour, New York local time.",
            ("sched_dep_hour",),
            SCHEDULE,
            "0 .. 23",
        ),
        Feature(
            "sched_dep_minute_of_day",
            "Scheduled departure, minutes after local midnight.",
            ("sched_dep_local",),
            SCHEDULE,
            "0 .. 1439",
        ),
        Feature(
            "distance_miles",
            "Great-circle route distance.",
            ("distance_miles",),
            SCHEDULE,
            "1 .. 6000 mi (2013: 17 .. 4983)",
        ),
        Feature(
            "origin_flights_same_hour",
            "Flights scheduled from the same origin in the same local hour of the same day "
            "(congestion).",
            ("day", "origin", "sched_dep_hour"),
            SCHEDULE,
            ">= 1",
        ),
        Feature(
            "origin_flights_same_day",
            "Flights scheduled from the same origin on the same day.",
            ("day", "origin"),
            SCHEDULE,
            ">= 1",
        ),
        Feature("temp_f", "Air temperature at the origin.", ("temp_f",), WEATHER, "-40 .. 130 °F"),
        Feature(
            "dewpoint_f",
            "Dew point at the origin.",
            ("dewpoint_f",),
            WEATHER,
            "-60 .. 100 °F, at most temp_f",
        ),
        Feature(
            "humidity_pct",
            "Relative humidity at the origin.",
            ("humidity_pct",),
            WEATHER,
            "0 .. 100 %",
        ),
        Feature(
            "wind_speed_mph",
            "Wind speed at the origin.",
            ("wind_speed_mph",),
            WEATHER,
            "0 .. 250 mph",
        ),
        Feature(
            "wind_gust_mph",
            "Wind gust at the origin (null: none reported).",
            ("wind_gust_mph",),
            WEATHER,
            "0 .. 250 mph",
        ),
        Feature(
            "precip_in",
            "Precipitation in the observed hour.",
            ("precip_in",),
            WEATHER,
            "0 .. 12 in",
        ),
        Feature(
            "pressure_mb",
            "Sea-level pressure at the origin (often unreported).",
            ("pressure_mb",),
            WEATHER,
            "870 .. 1085 mb",
        ),
        Feature(
            "visibility_mi", "Visibility at the origin.", ("visibility_mi",), WEATHER, "0 .. 10 mi"
        ),
        Feature(
            "plane_age_years",
            "The flight's year minus the plane's year of manufacture (null: unknown plane).",
            ("day", "plane_manufacture_year"),
            STATIC,
            "0 .. 110",
        ),
        Feature(
            "plane_seats",
            "Seats of the plane (null: unknown plane).",
            ("plane_seats",),
            STATIC,
            "1 .. 900",
        ),
        *_rolling(),
    ]
}
LABEL_ENTRY = Feature(
    LABEL,
    f"The label: arrival more than {DELAY_THRESHOLD_MINUTES:g} minutes late (null when the "
    "flight never arrived: cancelled or diverted; such rows never train or test).",
    ("arr_delay_minutes",),
    "the flight's own outcome: a label, never a feature",
    "0 or 1",
)


def describe(column: str) -> str | None:
    """A feature table column's description for the UI (None for identity columns)."""
    found = CATALOG.get(column) or (LABEL_ENTRY if column == LABEL else None)
    if found is None:
        return None
    return (
        f"{found.meaning} Point in time: {found.point_in_time}. Expected: {found.expected_range}."
    )


def descriptions() -> dict[str, str]:
    """feature (and label) -> `describe`: a feature table's column descriptions."""
    return {name: text for name in [*CATALOG, LABEL] if (text := describe(name))}


def lineage() -> dict[str, tuple[str, ...]]:
    """feature (and label) -> the validated_flights columns it is computed from."""
    return {name: f.sources for name, f in {**CATALOG, LABEL: LABEL_ENTRY}.items()}


def missing_entries() -> list[str]:
    """Features flights.py builds that the catalog does not describe, and the reverse."""
    return sorted(set(ALL_FEATURES) ^ set(CATALOG))


def render_markdown() -> str:
    """docs/features.md."""
    lines = [
        "# Features",
        "",
        "Generated from `src/trainflow/features/catalog.py` (the catalog beside the feature",
        "functions); `tests/features/test_catalog.py` keeps this file equal to it. The same",
        "entries describe the columns of `flight_features` and `training_dataset` in the Dagster",
        "UI, with column lineage back to `validated_flights` and the warehouse's",
        "`flights_enriched`.",
        "",
        "| feature | meaning | from (validated_flights columns) | point in time | expected |",
        "|---|---|---|---|---|",
    ]
    for f in [*CATALOG.values(), LABEL_ENTRY]:
        sources = ", ".join(f"`{s}`" for s in f.sources)
        lines.append(
            f"| `{f.name}` | {f.meaning} | {sources} | {f.point_in_time} | {f.expected_range} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m trainflow.features.catalog [docs/features.md]
    if len(sys.argv) > 1:
        target = Path(sys.argv[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_markdown())
    else:
        print(render_markdown(), end="")
