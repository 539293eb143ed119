"""The benchmark helper that compares one core with all usable cores (benchmarks/cores.py)."""

import os
import subprocess
import sys

from tests.conftest import REPO

FAKE_BENCHMARK = """
import os
cores = len(os.sched_getaffinity(0))
print(f"training, batch 256: runs 1, 2  median: {1500 * cores:,} samples/s")
print("a line without a figure")
print(f"L_1000: runs 3  median: {40000 + cores:,} samples/s")
"""


def test_pairs_each_median_of_one_core_with_all_cores(tmp_path):
    script = tmp_path / "fake_benchmark.py"
    script.write_text(FAKE_BENCHMARK)
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "cores.py"), str(script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    cores = len(os.sched_getaffinity(0))
    table = result.stdout.split("| measurement |", 1)[1].splitlines()
    assert table[2] == (f"| training, batch 256 (samples/s) | 1,500 | {1500 * cores:,} | "
                        f"{cores:.2f}x |")
    assert table[3] == (f"| L_1000 (samples/s) | 40,001 | {40000 + cores:,} | "
                        f"{(40000 + cores) / 40001:.2f}x |")
    assert len(table) == 4


def test_a_failing_benchmark_is_reported(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("raise SystemExit('no data here')")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "cores.py"), str(script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no data here" in result.stderr


def test_codec_sizes_are_whole_files_per_image():
    """benchmarks/codecs.py: bits per dimension of each image's own file, checked lossless;
    noise cannot be coded below 8 bits per value, a flat image codes in far fewer."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("codecs_benchmark",
                                                  REPO / "benchmarks" / "codecs.py")
    codecs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codecs)
    noise = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    flat = np.full((2, 64, 64, 3), 77, np.uint8)  # AVIF's container alone is ~300 bytes
    for codec in codecs.CODECS.values():
        assert codecs.codec_bits_per_dim(noise, codec) > 8.0
        assert codecs.codec_bits_per_dim(flat, codec) < 0.5
