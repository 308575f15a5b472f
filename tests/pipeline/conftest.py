"""Shared fixtures: one synthetic marketplace, one Spark JVM for the whole session."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from funnel.data.synthetic import MarketplaceConfig, generate_tables


@pytest.fixture(scope="session")
def market() -> dict[str, pa.Table]:
    return generate_tables(MarketplaceConfig(n_events=20_000, seed=1))


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("java not found on PATH")
    from funnel.pipeline.engines import spark_session

    session = spark_session("local[2]", shuffle_partitions=2, driver_memory="1g")
    yield session
    session.stop()
