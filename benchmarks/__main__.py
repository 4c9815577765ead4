"""Run every benchmark case and print a table: python -m benchmarks (or make bench).

    python -m benchmarks [--device cuda] [--quick]                 # the default suite (all the cases)
    python -m benchmarks --suite gpu [--out FILE.json] [--quick]   # the GPU suite: one JSON file and a table

The GPU suite runs each case of ``GPU_CASES`` in this process under its own time budget (a case that
raises or overruns is recorded as failed or timed out, with the reason, and the suite goes on), keeps
the whole suite within ``--budget`` seconds, rewrites the JSON file after every case (a crash keeps the
figures taken so far), then prints a markdown table (also written beside the JSON as .md) with each
goal met or not met. ``--quick`` runs the same cases at tiny sizes (a check that the suite runs, on a CPU).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CASES = [  # the default suite: module, arguments (full), arguments (--quick), takes --device
    ("dcgan", ["--images", "9000", "--repeats", "2", "--bf16"], ["--images", "1280"], True),
    ("wgangp", ["--images", "4500", "--repeats", "2"], ["--images", "640"], True),
    ("sampling", ["--n", "10000"], ["--n", "2000", "--repeats", "1"], True),
    ("seq2seq", [], ["--tutorial-pairs", "100", "--sozo-pairs", "1280"], False),
    ("language", ["--repeats", "2"], ["--steps", "5"], True),
    ("vae", ["--images", "20000", "--n", "20000", "--repeats", "2"],
     ["--images", "1280", "--n", "2000", "--repeats", "1"], True),
    ("time_to_quality", ["--threshold", "15", "--max-seconds", "900"],
     ["--images", "640", "--n-eval", "500", "--max-seconds", "2", "--lenet-epochs", "1"], True),
    ("music_lstm", ["--repeats", "2"], ["--limit", "40", "--steps", "10"], True),
    ("img2img", ["--repeats", "2"], ["--size", "32", "--steps", "1", "--width", "4", "--repeats", "1"], True),
    ("stream", ["--n", "50000", "--repeats", "2"], ["--quick"], True),
    ("made", ["--n", "1000"], ["--n", "20", "--batch", "20", "--hidden", "50", "--repeats", "1"], True),
    ("ddpm", ["--n", "500", "--fd-n", "2000"], ["--n", "8", "--fd-n", "200", "--fd-steps", "2,5"], True),
    ("limits", [], ["--quick"], False),
    ("ddp", ["--rounds", "7"], ["--quick"], False),  # 2 processes on gloo (CPU): sozo's averaging vs DDP
]


# --- the GPU suite -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Goal:
    """A target for one figure of a case's summary: ``measure(summary) op value``."""
    text: str  # as the table shows it, e.g. ">= 10x plain loop"
    measure: Callable[[dict], float | None]
    op: str  # ">=" or "<"
    value: float

    def check(self, summary: dict | None, applies: bool = True) -> dict[str, Any]:
        """The figure and whether it meets the goal (None: not measured, or ``applies`` is False: the
        goals are for the full suite on a GPU, not for --quick or a CPU)."""
        got = self.measure(summary) if summary else None
        met = None if got is None or not applies else (got >= self.value if self.op == ">=" else got < self.value)
        return {"goal": self.text, "measured": got, "met": met}


@dataclass(frozen=True)
class Row:
    """One line of the table: a sozo figure of the case's summary, with its plain loop and ratio if any."""
    label: str
    unit: str
    sozo: str  # key of the summary
    plain: str | None = None
    ratio: str | None = None
    goals: tuple[Goal, ...] = ()

    def title(self, summary: dict) -> str:
        """The label with the summary's values in its {fields} (batch size, steps…; ? where absent)."""
        return self.label.format_map(_Missing(summary))


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "?"


@dataclass(frozen=True)
class GPUCase:
    name: str
    module: str  # benchmarks.<module>.main(argv) -> summary dict (None or SystemExit: skipped)
    full: list[str]
    quick: list[str]
    budget_s: float  # wall-clock limit of the full case (start-up and compile included)
    rows: tuple[Row, ...]
    takes_device: bool = True
    data: bool = False  # takes --data (the parallel corpus) from --data-dir
    note: str = ""


def _get(key: str) -> Callable[[dict], float | None]:
    return lambda s: s.get(key)


def _seconds_for(n: int, key: str) -> Callable[[dict], float | None]:
    return lambda s: round(n / s[key], 3) if s.get(key) else None


def _train(label: str) -> Row:
    """sozo's trainer end to end (torch.compile, the one-batch check, checkpoints included) vs the plain loop."""
    return Row(label, "images/s", "sozo_per_s", "plain-loop_per_s", "ratio_sozo")


def _steady(label: str, prefix: str = "", goals: tuple[Goal, ...] = ()) -> Row:
    """sozo's training steps alone (common.steady_rate) vs the same plain loop run."""
    startup = "" if prefix else " (without {sozo-steady_startup_s} s of start-up)"  # (vae: not kept)
    return Row(label + startup,
               "images/s", f"{prefix}sozo-steady_per_s", f"{prefix}plain-loop_per_s", f"ratio_{prefix}sozo-steady",
               goals)


def _family(name: str, full: list[str], quick: list[str], budget_s: float, sampling: str,
            training: str = "training") -> GPUCase:
    """A case of benchmarks.families: sozo's training steps and sampling (no plain loop), batch 128."""
    return GPUCase(name, "families", ["--family", name, "--batch-size", "128", *full],
                   ["--family", name, "--tiny", "--train-steps", "3", "--batch-size", "8", "--warmup", "1",
                    "--limit", "100", *quick], budget_s,
                   (Row(f"{name} {training}, batch {{batch_size}}", "images/s", "train_images_per_s"),
                    Row(f"{name} {sampling}", "images/s", "sample_images_per_s")))


# The sizes: each case's cost is mostly fixed on a GPU (CUDA start, torch.compile and cudnn's first
# choices, tens of seconds), so the numbers of images are set for a few seconds of steady training
# per case on an H200 and the budgets generously above that; the budgets add up to less than 480 s.
GPU_CASES: list[GPUCase] = [  # in order of priority: the cases with goals first
    GPUCase("dcgan-28", "dcgan", ["--images", "64000", "--batch-size", "64", "--repeats", "2"],
            ["--images", "64", "--batch-size", "32"], 80,
            (_train("DCGAN-28 training, batch {batch_size}, sozo end to end"),
             _steady("DCGAN-28 training, sozo's steps", "",
                     (Goal(">= 10x plain loop", _get("ratio_sozo-steady"), ">=", 10),
                      Goal(">= 50,000 images/s", _get("sozo-steady_per_s"), ">=", 50000))))),
    GPUCase("wgan-gp-28", "wgangp", ["--images", "32000", "--batch-size", "64", "--repeats", "2"],
            ["--images", "64", "--batch-size", "32"], 55,
            (_train("WGAN-GP-28 training, batch {batch_size}, sozo end to end"),
             _steady("WGAN-GP-28 training, sozo's steps", "", (Goal(">= 3x plain loop", _get("ratio_sozo-steady"),
                                                                      ">=", 3),)))),
    GPUCase("sampling", "sampling", ["--n", "10000", "--repeats", "3"], ["--n", "200", "--repeats", "1"], 25,
            (Row("sampling {n} DCGAN-28 images", "images/s", "sozo_per_s", "plain-loop_per_s", "ratio_sozo",
                 (Goal("10,000 images < 1 s", _seconds_for(10000, "sozo_per_s"), "<", 1),)),)),
    GPUCase("seq2seq-epoch", "families", ["--family", "seq2seq", "--batch-size", "64"],
            ["--family", "seq2seq", "--tiny", "--batch-size", "16"], 45,
            (Row("seq2seq ja->en, one epoch of {pairs} pairs (sozo default, batch {batch_size})", "pairs/s",
                 "pairs_per_s", goals=(Goal("50,000 pairs < 10 s", _get("seconds_per_50000"), "<", 10),)),),
            data=True, note="sozo.train on the device; the epoch's own seconds (the trainer's epoch record)"),
    GPUCase("dcgan-64", "dcgan", ["--size", "64", "--images", "32000", "--batch-size", "128", "--repeats", "2"],
            ["--size", "64", "--width", "8", "--images", "32", "--batch-size", "16"], 60,
            (_train("DCGAN-64 training (the PyTorch tutorial's nets, width {width}), batch {batch_size}, "
                    "sozo end to end"),
             _steady("DCGAN-64 training, sozo's steps"))),
    _family("ddpm", ["--train-steps", "300", "--n", "2000"], ["--n", "4", "--sample-steps", "2"], 40,
            "sampling {sample_n} images, {sample_steps} DDIM steps"),
    GPUCase("vae", "vae", ["--images", "128000", "--n", "20000", "--repeats", "2"],
            ["--images", "128", "--n", "200", "--repeats", "1"], 35,
            (Row("VAE (MLP 784-400-20) training, batch {batch_size}, sozo end to end", "images/s", "train-sozo_per_s",
                 "train-plain-loop_per_s", "ratio_train-sozo"),
             _steady("VAE training, sozo's steps", "train-"),
             Row("VAE sampling {n} images", "images/s", "sample-sozo_per_s", "sample-plain-loop_per_s",
                 "ratio_sample-sozo"))),
    _family("realnvp", ["--train-steps", "300", "--n", "10000"], ["--n", "4"], 30,
            "sampling {sample_n} images (one inverse pass)"),
    _family("pixelcnn", ["--train-steps", "300", "--n", "2000"], ["--n", "2"], 35,
            "sampling {sample_n} images (a forward a pixel)"),
    _family("ebm", ["--train-steps", "100", "--n", "2000"], ["--n", "4", "--sample-steps", "2"], 35,
            "sampling {sample_n} images, {sample_steps} Langevin steps", "training (Langevin chains in each step)"),
    GPUCase("seq2seq", "seq2seq", ["--tutorial-pairs", "100", "--sozo-pairs", "3200", "--threads", "4"],
            ["--tutorial-pairs", "4", "--sozo-pairs", "64", "--hidden", "16"], 40,
            (Row("seq2seq ja->en vs the tutorial's loop, sozo preset=article (CPU, {threads} threads, "
                 "batch {batch_size})", "pairs/s", "sozo-article_pairs_per_s", "tutorial-loop_pairs_per_s",
                 "ratio_sozo-article"),
             Row("seq2seq ja->en vs the tutorial's loop, sozo default (CPU, {threads} threads)", "pairs/s",
                 "sozo-default_pairs_per_s", "tutorial-loop_pairs_per_s", "ratio_sozo-default")),
            takes_device=False, data=True, note="benchmarks/seq2seq.py trains on the CPU only (its device is fixed)"),
    # more GPU cases go here, e.g. the multi-GPU one: GPUCase("ddp", "ddp", [full args], [quick args], budget_s, rows)
]
GPU_BUDGET_S = 480.0  # the whole suite on one GPU: 8 minutes
QUICK_CASE_BUDGET_S = 60.0
QUICK_PAIRS = 300  # --quick: the parallel corpus cut to its first lines (the data's preparation is then quick)


class CaseTimeout(BaseException):
    """A case ran past its budget (a BaseException: no ``except Exception`` inside a case swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout in this (main) thread after ``seconds``; no limit where SIGALRM is missing."""
    if not hasattr(signal, "setitimer") or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"ran past its budget of {seconds:.0f} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def environment(device: Any) -> dict[str, Any]:
    import torch

    import sozo
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        commit = out.stdout.strip() or None
    cuda = device.type == "cuda"
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor()
            or platform.machine(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "gpu_memory_gb": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1) if cuda else None,
            "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "sozo": getattr(sozo, "__version__", None), "commit": commit}


def quick_corpus(folder: Path, into: Path, lines: int = QUICK_PAIRS) -> Path:
    """The first ``lines`` lines of each file of a parallel folder, copied into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_file():
            with f.open(encoding="utf-8") as src:
                head = [line for _, line in zip(range(lines), src)]
            (into / f.name).write_text("".join(head), encoding="utf-8")
    return into


def default_data_dir() -> Path:
    """The folder holding small_parallel_enja: ../shared/data beside the checkout, else ./shared/data."""
    options = [ROOT / ".." / "shared" / "data", ROOT / "shared" / "data"]
    return next((d for d in options if (d / "small_parallel_enja").is_dir()), options[0])


class _Tee(io.TextIOBase):
    """Passes what a case prints through, and keeps its JSON lines (the results of each repeat: a case
    stopped by its time limit still has those it finished)."""

    def __init__(self, out: Any):
        self.out, self.pending, self.lines = out, "", []

    def write(self, text: str) -> int:
        self.out.write(text)
        self.pending += text
        *done, self.pending = self.pending.split("\n")
        for line in done:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    self.lines.append(json.loads(line))
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def run_case(case: GPUCase, argv: list[str], budget: float, goals_apply: bool = True) -> dict[str, Any]:
    """Run one case under its time limit; its record (status ok / skipped / failed / timeout, the
    summary, every JSON line it printed as ``results``, and its goals)."""
    rec: dict[str, Any] = {"case": case.name, "module": f"benchmarks.{case.module}", "argv": argv,
                           "budget_s": round(budget, 1), "status": "ok", "reason": None, "summary": None}
    t0 = time.perf_counter()
    tee = _Tee(sys.stdout)
    try:
        with time_limit(budget), contextlib.redirect_stdout(tee):
            summary = importlib.import_module(f"benchmarks.{case.module}").main(argv)
        if summary is None:  # the case printed why it did not run, e.g. {"skipped": "no data folder …"}
            said = [line["skipped"] for line in tee.lines if "skipped" in line]
            rec.update(status="skipped", reason=said[-1] if said else "the case returned no summary")
        else:
            rec["summary"] = summary
    except SystemExit as e:  # a case that cannot run here (its data is absent…) says why and exits
        rec.update(status="skipped", reason=str(e))
    except CaseTimeout as e:
        rec.update(status="timeout", reason=str(e))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of one case is recorded and the suite goes on
        rec.update(status="failed", reason=f"{type(e).__name__}: {e}".splitlines()[0][:300],
                   traceback=traceback.format_exc()[-3000:])
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    rec["results"] = [line for line in tee.lines if not line.get("summary")]
    rec["goals"] = goal_checks(case, rec["summary"], goals_apply)
    return rec


def goal_checks(case: GPUCase, summary: dict | None, applies: bool) -> list[dict[str, Any]]:
    return [{"row": row.title(summary or {}), **g.check(summary, applies)} for row in case.rows for g in row.goals]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 10 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    head = (f"GPU suite ({'--quick, ' if report['quick'] else ''}{env['device_name']}, torch {env['torch']}, "
            f"CUDA {env['cuda'] or '-'}; {report['wall_s']:.0f} s in all; `{report['command']}`)")
    lines = [head, "", "| case | measure | sozo | plain loop | ratio | goal | wall s | status |",
             "|---|---|---|---|---|---|---|---|"]
    by_name = {c.name: c for c in GPU_CASES}
    applies = report["goals_apply"]
    for rec in report["cases"]:
        case, s = by_name.get(rec["case"]), rec["summary"] or {}
        status = rec["status"] if rec["status"] == "ok" else f"{rec['status']}: {rec['reason']}"
        rows = case.rows if case else (Row(rec["case"], "", ""),)
        for i, row in enumerate(rows):
            goals = []
            for g in row.goals:
                c = g.check(rec["summary"], applies)
                if c["met"] is not None:
                    goals.append(f"{g.text}: {'met' if c['met'] else 'not met'} ({_fmt(c['measured'])})")
                else:
                    goals.append(f"{g.text}: not measured" + ("" if applies else " (GPU goal)"))
            ratio = s.get(row.ratio) if row.ratio else None
            lines.append(f"| {rec['case'] if i == 0 else ''} | {row.title(s)} ({row.unit}) | {_fmt(s.get(row.sozo))} | "
                         f"{_fmt(s.get(row.plain)) if row.plain else 'none'} | "
                         f"{f'{ratio:.2f}x' if isinstance(ratio, (int, float)) else ''} | {'; '.join(goals)} | "
                         f"{_fmt(rec['wall_s']) if i == 0 else ''} | {status if i == 0 else ''} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    from sozo.runs import write_text  # atomic: a kill mid-write leaves the previous version whole
    write_text(out, json.dumps(report, indent=1, default=str) + "\n")
    write_text(out.with_suffix(".md"), markdown(report))


def gpu_suite(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from sozo.devices import resolve_device
    t_start = time.perf_counter()
    device = resolve_device(args.device)
    stamp = dt.datetime.now(dt.timezone.utc)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        f"gpu-{'quick-' if args.quick else ''}{stamp:%Y%m%d-%H%M%S}.json")
    cases = [c for c in GPU_CASES if not args.only or c.name in args.only.split(",")]
    unknown = set(args.only.split(",")) - {c.name for c in GPU_CASES} if args.only else set()
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(sorted(unknown))}; the cases: "
                         + ", ".join(c.name for c in GPU_CASES))
    budget = args.budget if args.budget is not None else (len(cases) * QUICK_CASE_BUDGET_S if args.quick
                                                          else GPU_BUDGET_S)
    report: dict[str, Any] = {"suite": "gpu", "quick": args.quick, "started": stamp.isoformat(timespec="seconds"),
                              "command": " ".join(["python -m benchmarks", *sys.argv[1:]]) if args.argv is None
                              else " ".join(["python -m benchmarks", *args.argv]),
                              "budget_s": budget, "environment": environment(device),
                              "goals_apply": device.type == "cuda" and not args.quick, "cases": [], "wall_s": 0.0}
    if device.type != "cuda" and not args.quick:
        report["note"] = f"no CUDA device here: the figures are {device}'s"
        print(f"# {report['note']}", flush=True)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = data_dir / "small_parallel_enja"
        if args.quick and corpus.is_dir():
            corpus = quick_corpus(corpus, Path(tmp) / "small_parallel_enja")
        planned = 0.0  # the budgets of the cases run so far
        for case in cases:
            argv = (case.quick if args.quick else case.full) + (["--device", args.device] if case.takes_device else [])
            if case.data:
                argv += ["--data", str(corpus)]
            elapsed = time.perf_counter() - t_start
            own = QUICK_CASE_BUDGET_S if args.quick else case.budget_s
            saved = max(0.0, planned - elapsed)  # what the cases before left of their budgets is this one's too
            limit = min(budget - elapsed, own + saved)
            planned += own
            print(f"# {case.name}: benchmarks.{case.module} {' '.join(argv)} (limit {limit:.0f} s)", flush=True)
            if limit < min(own, 5):
                rec = {"case": case.name, "module": f"benchmarks.{case.module}", "argv": argv, "status": "skipped",
                       "reason": f"the suite's budget of {budget:.0f} s is spent", "summary": None, "wall_s": 0.0,
                       "goals": goal_checks(case, None, report["goals_apply"])}
            else:
                rec = run_case(case, argv, limit, report["goals_apply"])
            if case.note:
                rec["note"] = case.note
            if rec["status"] != "ok":
                print(f"# {case.name}: {rec['status']} ({rec['reason']})", flush=True)
            report["cases"].append(rec)
            report["wall_s"] = round(time.perf_counter() - t_start, 1)
            report["goals"] = [{"case": r["case"], **g} for r in report["cases"] for g in r["goals"]]
            write_report(report, out)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print("\n" + markdown(report), flush=True)
    print(f"# wrote {out} and {out.with_suffix('.md')}", flush=True)
    report["out"] = str(out)
    return report


def default_suite(args: argparse.Namespace) -> None:
    rows = []
    for name, full, quick, takes_device in CASES:
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ImportError as e:
            print(f"# {name}: skipped ({e})")
            continue
        argv = (quick if args.quick else full) + (["--device", args.device] if takes_device else [])
        try:
            summary = mod.main(argv)
        except SystemExit as e:  # a case that cannot run here (e.g. its data is absent) says why and exits
            print(f"# {name}: skipped ({e})")
            continue
        if summary:
            rows.append(summary)
    print("\n| bench | device | case | per second | ratio to plain loop |\n|---|---|---|---|---|")
    for s in rows:
        for key, value in s.items():
            if key.endswith("_per_s"):
                case = key[: -len("_per_s")]
                ratio = s.get(f"ratio_{case}", "")
                print(f"| {s['bench']} | {s.get('device', '')} | {case} | {value} | {ratio} |")


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=("all", "gpu"), default="all",
                   help="all: every case, JSON lines and a table (default); gpu: the GPU suite (one JSON file)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="small sizes, to check the suite runs")
    p.add_argument("--out", help="--suite gpu: the JSON file (default benchmarks/results/gpu-DATE.json; .md beside)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"--suite gpu: seconds for the whole suite (default {GPU_BUDGET_S:.0f}; --quick: 60 a case)")
    p.add_argument("--only", default="", help="--suite gpu: a comma-separated subset of the cases")
    p.add_argument("--data-dir", default="", help="--suite gpu: the folder holding small_parallel_enja "
                                                  "(default ../shared/data, else ./shared/data)")
    args = p.parse_args(argv)
    args.argv = argv
    if args.suite == "gpu":
        return gpu_suite(args)
    default_suite(args)
    return None


if __name__ == "__main__":
    main()
