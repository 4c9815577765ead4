"""Run every benchmark case: python -m benchmarks (or make bench)."""
from . import dcgan

if __name__ == "__main__":
    dcgan.main(["--repeats", "2", "--bf16"])
