"""Window geometry (xcnn/ops/geometry.py): output sizes against the formula, clear refusals."""
from __future__ import annotations

import pytest

from xcnn import ops
from xcnn.errors import ConfigError, ShapeError


@pytest.mark.parametrize("H, k, s, p, expected", [(28, 5, 1, 2, 28), (28, 2, 2, 0, 14), (7, 3, 2, 1, 4),
                                                  (5, 5, 3, 0, 1), (1, 1, 1, 0, 1)])
def test_output_sizes(H, k, s, p, expected):
    assert ops.conv_output_size(H, k, s, p) == expected
    assert ops.conv_geometry(H, H + 1, k, s, p) == (k, k, s, s, p, p, expected,
                                                       ops.conv_output_size(H + 1, k, s, p))


def test_pairs_and_defaults():
    assert ops.pair(3) == (3, 3) and ops.pair((3, 2)) == (3, 2)
    assert ops.pool_geometry(8, 6, 2)[:4] == (2, 2, 2, 2)  # stride defaults to the window


@pytest.mark.parametrize("call, error, message", [
    (lambda: ops.conv_geometry(3, 3, 5), ShapeError, "larger than the padded input"),
    (lambda: ops.conv_geometry(3, 3, 3, 0), ConfigError, "stride must be >= 1"),
    (lambda: ops.conv_geometry(3, 3, 3, 1, -1), ConfigError, "padding must be >= 0"),
    (lambda: ops.conv_geometry(3, 3, 0), ConfigError, "kernel_size must be >= 1"),
    (lambda: ops.conv_geometry(3, 3, 2.5), TypeError, "kernel_size must be an int"),
    (lambda: ops.conv_geometry(3, 3, (1, 2, 3)), ConfigError, "kernel_size must be an int or a pair"),
    (lambda: ops.pool_geometry(4, 4, 2, 2, 2), ConfigError, "at most half the window"),
    (lambda: ops.pair(True), TypeError, "must be an int"),
])
def test_bad_geometry_is_refused_with_a_clear_message(call, error, message):
    with pytest.raises(error, match=message):
        call()
