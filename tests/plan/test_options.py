"""Every declared option, launcher's and sidecar's, walked through bad numbers: each
is refused by name (a SettingError) or parsed to a finite value inside its range."""

from __future__ import annotations

import math

import pytest

from entrypoint.errors import SettingError
from entrypoint.plan.options import OPTIONS, Number, Option, parse_option
from server.settings import SIDECAR_OPTIONS

BAD = ("inf", "-inf", "nan", "NaN", "-1", "0", "1e300", "1e-300", "9" * 40, "abc", "1.5.2", " ", "0x10", "½")
ALL = (*OPTIONS, *SIDECAR_OPTIONS)


def _numeric(option: Option) -> bool:
    """An option whose value is a number (its parser turns "1" or "1048576" into one)."""
    for raw in ("1", "1048576"):
        try:
            value = option.parse(raw)
        except Exception:  # refused: try the next, or it takes no number
            continue
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(option.parse, Number)


NUMERIC = [o for o in ALL if _numeric(o)]


def test_the_walk_covers_every_numeric_option() -> None:
    names = {o.env for o in NUMERIC}
    assert {"MEMORY_RESERVE_GB", "PROGRESS_INTERVAL", "MAX_MODEL_LEN", "KV_CACHE_MEMORY_BYTES"} <= names
    assert {"READY_POLL_INTERVAL", "PROBE_TIMEOUT", "HEAL_AFTER", "SIDECAR_PORT", "PORT"} <= names
    assert len(NUMERIC) >= 25


@pytest.mark.parametrize("option", ALL, ids=lambda o: o.env or o.name)
def test_bad_values_are_refused_by_name_or_parsed_in_range(option: Option) -> None:
    for raw in BAD:
        try:
            value = parse_option(option, raw, option.env or option.name)
        except SettingError as err:
            assert (option.env or option.name) in err.message and err.fix and "\n" not in str(err)
            continue
        if option in NUMERIC:
            assert raw in ("0", "-1") or not isinstance(value, float) or math.isfinite(value), raw
            assert raw not in ("inf", "-inf", "nan", "NaN", "1e300", "9" * 40), (raw, value)
            if isinstance(option.parse, Number):
                rule = option.parse
                assert rule.low <= value <= rule.high and not (rule.above and value == rule.low)


@pytest.mark.parametrize("option", [o for o in ALL if isinstance(o.parse, Number)], ids=lambda o: str(o.env))
def test_each_range_edge_is_accepted_and_just_beyond_refused(option: Option) -> None:
    rule = option.parse
    assert isinstance(rule, Number)
    assert parse_option(option, f"{rule.high:g}", str(option.env)) == rule.high
    with pytest.raises(SettingError, match="out of range"):
        parse_option(option, f"{rule.high * 1.5 + 1:g}", str(option.env))
    if not rule.above:
        assert parse_option(option, f"{rule.low:g}", str(option.env)) == rule.low
    with pytest.raises(SettingError):
        parse_option(option, f"{rule.low - 1:g}" if rule.low >= 1 else "-1", str(option.env))
