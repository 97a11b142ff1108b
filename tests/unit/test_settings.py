"""Setting readers name the variable and the rejected value."""

from __future__ import annotations

import pytest

from shared.settings import SettingsError, env_float


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_float_not_finite_rejected(raw: str) -> None:
    with pytest.raises(
        SettingsError, match=rf"^WAIT must be a finite number, got '{raw}'$"
    ):
        env_float("WAIT", 1.0, environ={"WAIT": raw})


def test_float_bounds_named() -> None:
    with pytest.raises(SettingsError, match=r"^WAIT must be at least 0.5, got 0.1$"):
        env_float("WAIT", 1.0, minimum=0.5, environ={"WAIT": "0.1"})
    with pytest.raises(
        SettingsError, match=r"^WAIT must be at most 10.0, got 10000000000.0$"
    ):
        env_float("WAIT", 1.0, maximum=10.0, environ={"WAIT": "1e10"})


def test_float_text_rejected() -> None:
    with pytest.raises(SettingsError, match=r"^WAIT must be a number, got 'soon'$"):
        env_float("WAIT", 1.0, environ={"WAIT": "soon"})


def test_float_default_and_value() -> None:
    assert env_float("WAIT", 1.5, environ={}) == 1.5
    assert env_float("WAIT", 1.5, environ={"WAIT": " 2.25 "}) == 2.25
