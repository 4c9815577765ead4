"""Run every benchmark case and print a table: python -m benchmarks (or make bench).

    python -m benchmarks [--device cuda] [--quick]
"""
from __future__ import annotations

import argparse
import importlib

CASES = [  # module, arguments (full), arguments (--quick), takes --device
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
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="small sizes, to check the suite runs")
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
