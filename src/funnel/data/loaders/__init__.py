"""Readers for real public formats, each mapping its source onto the data contract.

``funnel ingest --format NAME`` looks the reader up here. Every reader takes one path and
returns :class:`~funnel.data.loaders.base.SourceTables` (contract-named tables with
``_source_file``/``_source_row``, plus the lines it could not parse in ``rejected``); each
module's docstring documents how its source maps onto the contract.

=============  ====================================================================
name           source
=============  ====================================================================
movielens      RecBole atomic files (``.inter``/``.item``/``.user``, typed headers)
ml-100k        original MovieLens 100K ``u.data`` / ``u.item`` / ``u.user``
ml-1m          original MovieLens 1M ``ratings.dat`` / ``movies.dat`` / ``users.dat``
criteo         Criteo display-ads TSV (label, I1..I13, C1..C26)
diginetica     DIGINETICA ``train-item-views.csv``
yoochoose      session-rec ``SessionId ItemId Time`` TSV, raw YooChoose clicks / buys
taobao         Taobao UserBehavior CSV (pv / cart / fav / buy)
=============  ====================================================================

How every reader works (no per-line Python parsing): ``_read`` splits the file into lines with
Arrow's CSV reader; ``_fields`` splits lines into fields and checks counts and numbers as whole
columns, sending each failing line to ``rejected`` with its row and first reason; ``_ids``
gives sources without ids idempotent content-hash event ids; ``_tables`` shapes the result into
exact contract columns plus ``_source_file``/``_source_row``.
"""

from __future__ import annotations

from typing import Final

from funnel.data.loaders.base import REJECTED_SCHEMA, SOURCE_FILE, SOURCE_ROW, Loader, SourceTables
from funnel.data.loaders.criteo import CriteoFrame, load_criteo, read_criteo
from funnel.data.loaders.diginetica import load_diginetica
from funnel.data.loaders.movielens import load_ml1m, load_ml100k, load_recbole
from funnel.data.loaders.taobao import load_taobao
from funnel.data.loaders.yoochoose import load_yoochoose

LOADERS: Final[dict[str, Loader]] = {
    "movielens": load_recbole,
    "ml-100k": load_ml100k,
    "ml-1m": load_ml1m,
    "criteo": load_criteo,
    "diginetica": load_diginetica,
    "yoochoose": load_yoochoose,
    "taobao": load_taobao,
}
"""Registry of format readers by ``--format`` name."""


def get_loader(name: str) -> Loader:
    """The reader registered as ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return LOADERS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(LOADERS))
        raise ValueError(f"unknown loader format {name!r}; expected one of: {valid}") from None


__all__ = [
    "LOADERS",
    "REJECTED_SCHEMA",
    "SOURCE_FILE",
    "SOURCE_ROW",
    "CriteoFrame",
    "Loader",
    "SourceTables",
    "get_loader",
    "load_criteo",
    "load_diginetica",
    "load_ml100k",
    "load_ml1m",
    "load_recbole",
    "load_taobao",
    "load_yoochoose",
    "read_criteo",
]
