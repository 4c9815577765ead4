"""sozo benchmarks: each case prints JSON lines; compared with re-typed seed loops in the same run."""
