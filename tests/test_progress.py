"""Both training lifecycles store progress the same way (schemas.common.progress_percent)."""

from __future__ import annotations

import pytest

from schemas.common import progress_percent


@pytest.mark.parametrize(("reported", "stored"), [(-3.0, 0.0), (0.0, 0.0), (42.4567, 42.46), (100.0, 100.0), (250, 100.0)])
def test_progress_is_clamped_to_a_percentage_with_two_decimals(reported, stored):
    assert progress_percent(reported) == stored
