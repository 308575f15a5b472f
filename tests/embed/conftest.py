from __future__ import annotations

import numba
import pyarrow as pa
import pytest

from funnel.embed.simulate import SessionSimConfig, simulate_sessions

numba.set_num_threads(1)


@pytest.fixture(scope="session")
def market_sim() -> tuple[pa.Table, pa.Table]:
    """4,000 planted sessions over 6 markets x 5 categories x 3 price bands (720 items)."""
    return simulate_sessions(SessionSimConfig(n_sessions=4000, seed=1))


@pytest.fixture(scope="session")
def small_sim() -> tuple[pa.Table, pa.Table]:
    return simulate_sessions(SessionSimConfig(n_sessions=600, n_markets=3, seed=2))
