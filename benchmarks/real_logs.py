"""The served funnel on real click logs, next-item protocol, vs the simple baselines (issue 17).

For every real log in ``../shared/data`` that has sessions (DIGINETICA sample, Taobao
UserBehavior head, MovieLens-100K as per-user sequences; a log that is absent is skipped with
its path), in one run and on the same cases:

- split: sessions in order of their start time, the latest 20% are the test; the funnel and
  every baseline train on the events before the first test session started; items never
  clicked in training are dropped from the test sessions and sessions left shorter than 2 are
  dropped (the session-rec convention);
- the served funnel (``Engine.run`` as ``GET /recommend`` calls it, the session's clicks in the
  online state), each of its recall sources alone and the merger's fused list;
- popularity, last-item co-occurrence, sequential rules, V-SKNN (``funnel.recall.session_rules``)
  and the neural peer (RecTools SASRec in its own venv, ``benchmarks/_peer.py``; skipped with
  the reason when that venv is missing);
- the served funnel for an anonymous visitor and for the returning user (the clicks of the
  user's earlier sessions in the online state too), with the paired gain clustered by user;
- HR@20 and MRR@20 with 95% intervals clustered by session, on all cases and on the cases whose
  next item is new to the session (the funnel does not re-show the session's recent clicks, so
  it is judged on those; see ``funnel.evaluate.next_item``), and the funnel's ratio to the best
  simple baseline.

Sessions: DIGINETICA by its session id (30-minute gap inside), Taobao by the 30-minute gap of
each user's page views, MovieLens as one sequence per user (a gap no two ratings reach).

    python benchmarks/real_logs.py --quick                 # minutes: sampled cases, no peer
    python benchmarks/real_logs.py --json out.json         # every case of every log, peer too
    python benchmarks/real_logs.py --log diginetica
    python benchmarks/real_logs.py --train tr.tsv --test te.tsv --format yoochoose
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from funnel.cli.evaluate import next_item_table
from funnel.data.paths import shared_data_dir
from funnel.evaluate.next_item import (
    K,
    ListRecommender,
    NextItemRecommender,
    best_baseline,
    case_prefixes,
    evaluate_next_item,
    next_item_cases,
)
from funnel.evaluate.next_item_run import (
    NextItemRun,
    SplitData,
    build_split,
    build_stages,
    file_split,
    ingest_sessionized,
    run_next_item,
    workspace_split,
)

PER_USER_GAP_MINUTES = 1e9
"""A gap no two ratings of one user reach (~1900 years): each user is one sequence."""
QUICK_CASES = 1500
"""Cases per log with ``--quick`` (a seeded uniform sample)."""
PEER_EXTRA = 20
"""The peer is asked for ``k + PEER_EXTRA`` items so its list without the session's own items
still fills ``k`` on most new-to-session cases."""
PEER_TIMEOUT_S = 1800.0
"""The peer's time limit per log; past it, it is reported as skipped. ``--quick`` leaves the
peer out unless ``--peer`` is given: SASRec's 3 default epochs took 11 minutes on the
DIGINETICA sample on a busy 2-core machine."""
METHODS = ("funnel", "pop", "cooc", "sr", "vsknn", "peer")
console = Console(width=110)


@dataclass(frozen=True)
class Log:
    name: str
    path: str  # relative to the shared data directory
    loader: str
    gap_minutes: float = 30.0


LOGS = (
    Log("diginetica", "diginetica-sample-srgnn/sample_train-item-views.csv", "diginetica"),
    Log("taobao", "taobao-userbehavior-sample/UserBehavior_head.csv", "taobao"),
    Log("movielens", "movielens-100k", "movielens", PER_USER_GAP_MINUTES),
)


def peer_method(split: SplitData, max_cases: int | None, seed: int, timeout_s: float,
                loss: str | None = None, session_max_len: int | None = None
                ) -> tuple[list[NextItemRecommender], str]:
    """The peer's lists for exactly the cases the evaluation will draw, or a skip reason."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from _peer import peer_available, peer_recommend
    except ImportError as err:
        return [], f"benchmarks/_peer.py not importable ({err})"
    reason = peer_available()
    if reason is not None:
        return [], reason
    cases = next_item_cases(split.test, max_cases=max_cases, seed=seed)
    prefixes = case_prefixes(split.test, cases)
    t0 = time.perf_counter()
    try:
        lists = peer_recommend([list(s.items) for s in split.train], prefixes,
                               k=K + PEER_EXTRA, seed=seed, timeout=timeout_s, loss=loss,
                               session_max_len=session_max_len)
    except Exception as err:  # the peer is a separate program: report, don't abort the run
        return [], f"failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return ([ListRecommender.from_lists("peer", prefixes, lists)],
            f"ran in {time.perf_counter() - t0:.0f} s")


def evaluate(split: SplitData, *, max_cases: int | None, seed: int, peer: str | None,
             peer_timeout_s: float = PEER_TIMEOUT_S, generative: bool = False,
             peer_loss: str | None = None, peer_session_max_len: int | None = None
             ) -> tuple[NextItemRun, float, str]:
    """Build, replay, then the peer (``peer``: None to run it, else why it is skipped), each
    alone so that build time and latency are not shared with the peer's training. The peer is
    scored on the same cases (the sample depends only on the sessions, ``max_cases``, seed)."""
    console.print(f"  {len(split.train):,} train sessions, {len(split.test):,} test sessions "
                  f"({split.test_raw:,} before dropping unseen items)")
    stages = None
    if generative:  # the default stages and the generative recall source, measured paired
        stages = (*build_stages(split.train_ws)[0], "generative")
    artifact, build_s, notes = build_split(split, stages)
    console.print(f"  build {build_s:.1f} s" + "".join(f"\n  {n}" for n in notes))
    run = run_next_item(split, artifact, max_cases=max_cases, seed=seed)
    extra, peer_note = (peer_method(split, max_cases, seed, peer_timeout_s, peer_loss,
                                        peer_session_max_len) if peer is None else ([], peer))
    console.print(f"  peer: {peer_note if extra else 'skipped (' + peer_note + ')'}")
    if extra:
        scored = evaluate_next_item(extra, split.test, max_cases=max_cases, seed=seed)
        if scored.cases != run.result.cases:
            raise RuntimeError(f"peer scored on {scored.cases} cases, the rest on "
                               f"{run.result.cases}: the case sample is not deterministic")
        run.result.methods.update(scored.methods)
        run.figures.update({k: v for k, v in scored.figures().items()
                            if k.endswith(("_peer", "_peer_ci95"))})
    return run, build_s, peer_note


def flat(run: NextItemRun, build_s: float, prefix: str) -> dict[str, float | None]:
    """The benchmark contract's keys (``None`` for a method that did not run)."""
    f = run.figures
    out: dict[str, float | None] = {}
    for method in METHODS:
        for metric in ("hr20", "mrr20", "hr20_new", "mrr20_new"):
            value = f.get(f"{metric}_{method}")
            out[f"{prefix}{metric}_{method}"] = value
            out[f"{prefix}{metric}_{method}_ci95"] = f.get(f"{metric}_{method}_ci95")
    for name, m in run.result.methods.items():  # each recall source alone, and the merger
        if name.startswith("recall:"):
            key = name.replace(":", "_")
            for metric, fig in m.summary.items():
                out[f"{prefix}{metric.replace('@', '20')}_{key}"] = fig.mean
    for key in ("cases", "cases_new", "recommend_p50_ms", "recommend_p99_ms", "train_sessions",
                "test_sessions", "judged_on_new"):
        out[f"{prefix}{key}"] = f[key]
    if "recommend_p50_ms_without_generative" in f:
        out[f"{prefix}recommend_p50_ms_without_generative"] = f[
            "recommend_p50_ms_without_generative"]
    for key in sorted(k for k in f if k.startswith(("gain_personal_", "gain_generative_"))):
        out[f"{prefix}{key}"] = f[key]  # returning vs anonymous; with vs without generative
    for metric in ("hr20_new", "mrr20_new"):
        if f"{metric}_funnel_without_generative" in f:
            out[f"{prefix}{metric}_funnel_without_generative"] = f[
                f"{metric}_funnel_without_generative"]
    out[f"{prefix}build_s"] = build_s
    return out


def ratios(run: NextItemRun) -> list[str]:
    """The funnel over the best simple baseline, per metric, on the judged cases and on all."""
    lines = []
    funnel = run.result.methods["funnel"].summary
    order = ("hr@_new", "mrr@_new", "hr@", "mrr@") if run.result.judged_on == "new" \
        else ("hr@", "mrr@", "hr@_new", "mrr@_new")
    for metric in order:
        name, best = best_baseline(run.result, metric)
        ours = funnel[metric].mean
        ratio = ours / best if best > 0 else math.inf
        label = metric.replace("@", f"@{K}").replace("_new", " new")
        lines.append(f"{label}: funnel {ours:.3f} / best simple baseline {name} {best:.3f} "
                     f"= {ratio:.2f}x")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"a seeded sample of {QUICK_CASES} cases per log")
    ap.add_argument("--max-cases", type=int, default=None, help="cases per log (sampled)")
    ap.add_argument("--json", type=Path, default=None, help="write the flat figures here")
    ap.add_argument("--log", action="append", choices=[g.name for g in LOGS],
                    help="only this shared log (repeatable)")
    ap.add_argument("--train", type=Path, help="a session-rec train file (with --test)")
    ap.add_argument("--test", type=Path, help="the later test file (with --train)")
    ap.add_argument("--format", dest="fmt", help="loader of --train/--test, e.g. yoochoose")
    ap.add_argument("--no-peer", action="store_true", help="skip the neural peer")
    ap.add_argument("--peer", action="store_true", help="run the neural peer with --quick too")
    ap.add_argument("--peer-timeout", type=float, default=PEER_TIMEOUT_S,
                    help="seconds the peer may take per log")
    ap.add_argument("--peer-loss", choices=["softmax", "gBCE"], default=None,
                    help="the peer's loss (default: the library's full softmax); gBCE samples "
                         "256 negatives, for catalogs where the softmax does not finish")
    ap.add_argument("--peer-session-max-len", type=int, default=None,
                    help="the peer's session_max_len (default: the library's 100); each "
                         "training step scores every position of every session against the "
                         "whole catalog, so a shorter window is the peer's compute lever")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generative", action="store_true",
                    help="also build generative recall; report the funnel with and without it")
    args = ap.parse_args(argv)
    if (args.train is None) != (args.test is None) or (args.train and not args.fmt):
        ap.error("--train, --test and --format go together")
    max_cases = args.max_cases or (QUICK_CASES if args.quick else None)
    peer = ("--no-peer" if args.no_peer else
            "--quick; add --peer to run it" if args.quick and not args.peer else None)
    figures: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="funnel-real-logs-") as tmp:
        root = Path(tmp)
        if args.train:
            console.rule(f"{args.train.name} / {args.test.name} ({args.fmt})")
            split = file_split(args.train, args.test, args.fmt, root / "split")
            run, build_s, _ = evaluate(split, max_cases=max_cases, seed=args.seed,
                                       peer=peer,
                                       peer_timeout_s=args.peer_timeout,
                                       peer_loss=args.peer_loss,
                                       peer_session_max_len=args.peer_session_max_len,
                                       generative=args.generative)
            report(run, args.train.name)
            figures.update(flat(run, build_s, ""))
        else:
            data = shared_data_dir()
            for log in LOGS:
                if args.log and log.name not in args.log:
                    continue
                path = data / log.path
                if not path.exists():
                    console.print(f"[yellow]{log.name}: skipped, {path} not found[/]")
                    continue
                console.rule(f"{log.name} ({path}, loader {log.loader})")
                ws = ingest_sessionized(path, log.loader, root / log.name / "all",
                                        gap_minutes=log.gap_minutes)
                split = workspace_split(ws, root / log.name)
                run, build_s, _ = evaluate(split, max_cases=max_cases, seed=args.seed,
                                           peer=peer,
                                           peer_timeout_s=args.peer_timeout,
                                           peer_loss=args.peer_loss,
                                           peer_session_max_len=args.peer_session_max_len,
                                           generative=args.generative)
                report(run, log.name)
                figures.update(flat(run, build_s, f"{log.name}_"))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1, sort_keys=True))
        console.print(f"figures: {args.json}")


def report(run: NextItemRun, title: str) -> None:
    console.print(next_item_table(run.result, title=f"{title}: next item, HR/MRR@{K}"))
    f = run.figures
    console.print(f"  GET /recommend path: p50 {f['recommend_p50_ms']:.1f} ms, "
                  f"p99 {f['recommend_p99_ms']:.1f} ms")
    for line in ratios(run):
        console.print(f"  {line}")
    if "gain_personal_hr20_new" in f:
        console.print(
            f"  personalization (returning user's earlier sessions in the state, vs anonymous): "
            f"HR@{K} new {f['gain_personal_hr20_new']:+.3f} ± "
            f"{f['gain_personal_hr20_new_ci95']:.3f}, "
            f"MRR@{K} new {f['gain_personal_mrr20_new']:+.3f} ± "
            f"{f['gain_personal_mrr20_new_ci95']:.3f} (paired, clustered by user)")
    if "gain_generative_hr20_new" in f:
        console.print(
            f"  generative recall (the funnel with it, vs without): "
            f"HR@{K} new {f['gain_generative_hr20_new']:+.3f} ± "
            f"{f['gain_generative_hr20_new_ci95']:.3f}, "
            f"MRR@{K} new {f['gain_generative_mrr20_new']:+.3f} ± "
            f"{f['gain_generative_mrr20_new_ci95']:.3f} (paired, clustered by user); "
            f"GET /recommend p50 {f.get('recommend_p50_ms_without_generative', math.nan):.1f} ms "
            "without it")


if __name__ == "__main__":
    main()
