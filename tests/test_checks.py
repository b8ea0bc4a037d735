"""Tests of lbinv._checks, the argument checks lbinv shares: a bad value raises ValueError (TypeError
for a step size of the wrong type) whose message starts with the argument's name and shows the
value; a good value comes back normalised."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lbinv._checks import (
    check_bool,
    check_int,
    check_interval,
    check_number,
    check_shape,
    check_step,
    is_plain,
)

INF, NAN = float("inf"), float("nan")


def refused(error: type[Exception], name: str, shown: str, check, *args, **kwargs) -> str:
    """The message of the ``error`` that ``check(name, *args, **kwargs)`` raises: it starts with
    ``name`` and contains ``shown`` (how the bad value is written)."""
    with pytest.raises(error) as info:
        check(name, *args, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{name}: "), message
    assert shown in message, message
    return message


@pytest.mark.parametrize("value", [True, "1", None, INF, -INF, NAN, [1.0]])
def test_check_number_refuses_what_is_not_a_finite_number(value):
    refused(ValueError, "tol", repr(value), check_number, value)


def test_check_number_bounds_and_normalises():
    assert check_number("tol", 3) == 3.0 and isinstance(check_number("tol", 3), float)
    assert check_number("shift", -2.5) == -2.5  # no minimum by default
    assert check_number("tol", 0, minimum=0.0) == 0.0
    assert "expected a finite number >= 0, got -0.1" in refused(ValueError, "tol", "-0.1", check_number, -0.1, minimum=0.0)
    assert "expected a finite number > 0, got 0" in refused(ValueError, "alpha", "0", check_number, 0, minimum=0.0, strict=True)
    assert check_number("alpha", 1e-12, minimum=0.0, strict=True) == 1e-12


@pytest.mark.parametrize("value", [0, -3, 1.0, 2.5, True, "3", None])
def test_check_int_refuses(value):
    refused(ValueError, "max_iter", repr(value), check_int, value)


def test_check_int_minimum():
    assert check_int("max_iter", 5) == 5
    assert check_int("seed", 0, minimum=0) == 0
    assert check_int("offset", -7, minimum=None) == -7
    assert "expected an integer >= 2, got 1" in refused(ValueError, "k", "1", check_int, 1, minimum=2)
    assert "expected an integer, got 1.5" in refused(ValueError, "offset", "1.5", check_int, 1.5, minimum=None)


@pytest.mark.parametrize("value", [1, 0, "yes", None, torch.tensor(True)])
def test_check_bool(value):
    assert check_bool("log_images", True) is True and check_bool("log_images", False) is False
    refused(ValueError, "log_images", repr(value), check_bool, value)


def test_check_interval_normalises():
    assert check_interval("bounds", None) is None
    assert check_interval("bounds", (0, 1)) == (0.0, 1.0)
    assert check_interval("bounds", [0, 1]) == (0.0, 1.0)
    lo, hi = check_interval("bounds", (0, float("inf")))
    assert (lo, hi) == (0.0, INF) and isinstance(lo, float)
    assert check_interval("bounds", (-INF, INF)) == (-INF, INF)
    assert check_interval("data_range", np.array([0.0, 255.0]), finite=True) == (0.0, 255.0)


@pytest.mark.parametrize(
    "value, finite, match",
    [
        ((1.0, 0.0), False, "expected lo < hi"),
        ((0.0, 0.0), False, "expected lo < hi"),
        ((NAN, 1.0), False, "expected lo < hi"),
        ((0.0, 1.0, 2.0), False, "expected None or a pair"),
        ((0.0,), False, "expected None or a pair"),
        ("ab", False, "expected None or a pair"),
        (1.0, False, "expected None or a pair"),
        ((0.0, "x"), False, "expected None or a pair"),
        (("0", "1"), False, "expected None or a pair"),
        ((False, True), False, "expected None or a pair"),
        ((0.0, INF), True, "expected finite numbers"),
    ],
)
def test_check_interval_refuses(value, finite, match):
    assert match in refused(ValueError, "bounds", repr(value), check_interval, value, finite=finite)


def test_check_shape_normalises():
    assert check_shape("input_shape", 5) == (5,)
    assert check_shape("input_shape", [1, 28, 28]) == (1, 28, 28)
    shape = check_shape("input_shape", (np.int64(3), torch.Size([4])[0]))
    assert shape == (3, 4) and all(type(s) is int for s in shape)
    assert check_shape("input_shape", np.array([1, 8, 8])) == (1, 8, 8)
    assert check_shape("input_shape", (1.0, 8.0, np.float64(8.0))) == (1, 8, 8)  # whole numbers


@pytest.mark.parametrize("value", [(), (0, 3), (2, -1), (1.5,), (True,), True, 0, "28", None, 2.0])
def test_check_shape_refuses(value):
    assert "positive ints" in refused(ValueError, "input_shape", repr(value), check_shape, value)


def test_check_step():
    assert check_step(0.5) is None and check_step(3) is None
    assert check_step(torch.tensor([-1.0, NAN])) is None  # tensors are not checked (no device sync)


@pytest.mark.parametrize("value", [0.0, -1, INF, NAN])
def test_check_step_refuses_a_bad_number(value):
    with pytest.raises(ValueError) as info:
        check_step(value)
    message = str(info.value)
    assert message.startswith("t: ") and message.endswith(f"got {float(value)}"), message


@pytest.mark.parametrize("value", ["0.5", True, None, [0.5]])
def test_check_step_refuses_a_wrong_type(value):
    with pytest.raises(TypeError) as info:
        check_step(value)
    message = str(info.value)
    assert message.startswith("t: ") and message.endswith(f"got {type(value).__name__}"), message


def test_is_plain():
    class Renamed(nn.ReLU):
        pass

    class Shifted(nn.ReLU):
        def forward(self, x):
            return torch.relu(x) + 1.0

    assert is_plain(nn.ReLU(), nn.ReLU)
    assert is_plain(Renamed(), nn.ReLU)  # a subclass that keeps the forward computes the same
    assert not is_plain(Shifted(), nn.ReLU)
    assert not is_plain(nn.Linear(2, 2), nn.ReLU)
    assert not is_plain(nn.ReLU6(), nn.ReLU)  # a Hardtanh in torch, not a ReLU
