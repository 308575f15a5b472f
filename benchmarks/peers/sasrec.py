"""The neural sequential peer: RecTools SASRec, trained with its own defaults (issue 17).

Run by the peer virtualenv's python (``make peer-venv`` makes ``.venv-peer``), never by the main
venv's: RecTools pins numpy < 2 on Python 3.11. It does not import funnel. Usually called through
``benchmarks/_peer.py``; by hand::

    .venv-peer/bin/python benchmarks/peers/sasrec.py --train train.json --prefixes prefixes.json \\
        --out out.json --k 20 --seed 0

Inputs

- ``--train``: the train sessions, each an ordered list of item ids. JSON: a list of item-id
  lists, or ``{"sessions": [...]}`` of the same, or a list of ``{"session_id": ..., "items":
  [...]}``; or a ``.tsv`` with rows ``session_id<TAB>item_id`` in click order (a header line
  ``session_id<TAB>item_id`` is skipped). Each session is one RecTools user.
- ``--prefixes``: the test prefixes, JSON: a list of ordered item-id lists (or
  ``{"prefixes": [...]}``). Each prefix is recommended for as a user whose history is the prefix.
  Prefixes are only handed to ``recommend`` (as the dataset of the users to recommend for), never
  to ``fit``: no test item reaches training.

Output (``--out``, JSON): ``{"recommendations": [[item id, ...] per prefix], "library": ...,
"version": ..., "params": {...}, "n_cold": ..., "fit_seconds": ..., "recommend_seconds": ...}``.
A prefix with no item known to the model (RecTools calls it cold; SASRec does not recommend for
cold users) gets ``[]``; so does an empty prefix. Item ids are strings throughout.

Defaults: every ``SASRecModel`` constructor default (RecTools 0.19.0: 2 blocks, 4 heads,
256 factors, dropout 0.2, session_max_len 100, train_min_user_interactions 2, softmax loss,
lr 1e-3, batch 128, 3 epochs, causal attention, learnable positional encoding, id + category
item embeddings (no item features are given, so ids only)). Only the seed is set
(``pytorch_lightning.seed_everything``); ``--epochs`` overrides the default 3 when given, and
``--loss gBCE`` (with ``--n-negatives``, ``--gbce-t``) swaps the full softmax over the catalog for
gSASRec's sampled loss (Petrov & Macdonald, RecSys 2023), the library's own option for catalogs
where the softmax does not fit the machine.
Nothing is excluded from the recommendations unless ``--filter-prefix-items`` (RecTools'
``filter_viewed``) is passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

BASE_TS = 1_600_000_000  # synthetic timestamps: a session's i-th click at BASE_TS + i seconds


def read_train(path: Path) -> list[list[str]]:
    if path.suffix.lower() in (".tsv", ".txt"):
        sessions: dict[str, list[str]] = {}
        for n, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(f"{path}:{n + 1}: expected session_id<TAB>item_id")
            if n == 0 and fields == ["session_id", "item_id"]:
                continue
            sessions.setdefault(fields[0], []).append(fields[1])
        return list(sessions.values())
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data["sessions"]
    out = []
    for s in data:
        items = s["items"] if isinstance(s, dict) else s
        out.append([str(i) for i in items])
    return out


def read_prefixes(path: Path) -> list[list[str]]:
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data["prefixes"]
    return [[str(i) for i in p] for p in data]


def interactions_frame(sessions: list[list[str]], user_prefix: str):  # -> pd.DataFrame
    import numpy as np
    import pandas as pd
    from rectools import Columns

    users, items, ts = [], [], []
    for u, items_u in enumerate(sessions):
        users.extend([f"{user_prefix}{u}"] * len(items_u))
        items.extend(items_u)
        ts.extend(range(BASE_TS, BASE_TS + len(items_u)))
    return pd.DataFrame(
        {
            Columns.User: pd.Series(users, dtype=object),
            Columns.Item: pd.Series(items, dtype=object),
            Columns.Weight: np.ones(len(users), dtype=np.float32),
            Columns.Datetime: pd.to_datetime(np.asarray(ts, dtype=np.int64), unit="s"),
        }
    )


def run(args: argparse.Namespace) -> dict:
    import pytorch_lightning as pl
    import rectools
    import torch
    from rectools import Columns
    from rectools.dataset import Dataset
    from rectools.models import SASRecModel

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    train = read_train(Path(args.train))
    prefixes = read_prefixes(Path(args.prefixes))

    pl.seed_everything(args.seed, workers=True, verbose=False)
    kwargs = {}
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    if args.session_max_len is not None:
        kwargs["session_max_len"] = args.session_max_len
    if args.loss is not None:
        kwargs["loss"] = args.loss
        if args.loss != "softmax":
            kwargs["n_negatives"] = args.n_negatives
        if args.loss == "gBCE":
            kwargs["gbce_t"] = args.gbce_t
    model = SASRecModel(**kwargs)
    t0 = time.perf_counter()
    model.fit(Dataset.construct(interactions_frame(train, "s")))
    fit_seconds = time.perf_counter() - t0

    recs: list[list[str]] = [[] for _ in prefixes]
    t0 = time.perf_counter()
    nonempty = [i for i, p in enumerate(prefixes) if p]
    n_cold = len(prefixes) - len(nonempty)
    if nonempty:
        frame = interactions_frame([prefixes[i] for i in nonempty], "p")
        frame[Columns.User] = frame[Columns.User].map(lambda u: f"p{nonempty[int(u[1:])]}")
        users = [f"p{i}" for i in nonempty]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reco = model.recommend(
                users=users,
                dataset=Dataset.construct(frame),
                k=args.k,
                filter_viewed=args.filter_prefix_items,
                on_unsupported_targets="warn",
            )
        reco = reco.sort_values([Columns.User, Columns.Rank], kind="stable")
        seen = set()
        for user, group in reco.groupby(Columns.User, sort=False):
            i = int(str(user)[1:])
            recs[i] = [str(x) for x in group[Columns.Item].tolist()]
            seen.add(i)
        n_cold += len(nonempty) - len(seen)
        for w in caught:
            if "cold" not in str(w.message):
                print(f"warning: {w.message}", file=sys.stderr)
    recommend_seconds = time.perf_counter() - t0

    params = {
        k: v for k, v in model.get_params(simple_types=True).items() if not k.endswith("_type")
    }
    return {
        "recommendations": recs,
        "library": "RecTools",
        "version": rectools.__version__,
        "model": "SASRecModel",
        "torch": torch.__version__,
        "params": params,
        "seed": args.seed,
        "k": args.k,
        "filter_prefix_items": args.filter_prefix_items,
        "n_train_sessions": len(train),
        "n_prefixes": len(prefixes),
        "n_cold": n_cold,
        "fit_seconds": round(fit_seconds, 3),
        "recommend_seconds": round(recommend_seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True, help="train sessions (.json or .tsv)")
    ap.add_argument("--prefixes", required=True, help="test prefixes (.json)")
    ap.add_argument("--out", required=True, help="output JSON")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the library's (3)")
    ap.add_argument(
        "--session-max-len",
        type=int,
        default=None,
        help="default: the library's (100); a compute lever, see the module docstring",
    )
    ap.add_argument(
        "--loss",
        choices=["softmax", "BCE", "gBCE", "sampled_softmax"],
        default=None,
        help="default: the library's (full softmax); a sampled loss for large catalogs",
    )
    ap.add_argument("--n-negatives", type=int, default=256, help="negatives of a sampled loss")
    ap.add_argument("--gbce-t", type=float, default=0.75, help="gBCE calibration t")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    ap.add_argument(
        "--filter-prefix-items",
        action="store_true",
        help="exclude the prefix's own items (RecTools filter_viewed); default: exclude nothing",
    )
    args = ap.parse_args(argv)
    result = run(args)
    tmp = Path(args.out).with_suffix(".partial")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
