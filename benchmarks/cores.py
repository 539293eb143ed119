"""One core against all usable cores: runs a benchmark script on both and prints the ratio.

The script runs twice in child processes: pinned to one core (its CPU affinity set to the
first usable core, as `taskset -c N` would; `keras_lvae.threads.configure_for` then counts
one usable core), then on all the cores this process may use. Every line that reports
a median (`... median: 9,785 samples/s`) is paired with the same line of the other run:

    python benchmarks/cores.py benchmarks/train_throughput.py --runs 5 --steps 300 --no-jit
    python benchmarks/cores.py benchmarks/iw_throughput.py --runs 5
    python benchmarks/cores.py benchmarks/iw_throughput.py --runs 5 --examples 5 --samples 5000
    python benchmarks/cores.py benchmarks/conv_throughput.py \\
        recipes/conv_static_mnist_small.py --runs 3

Set `KERAS_LVAE_CPU_THREADS=tensorflow` to compare with TensorFlow's own thread default.
"""

import os
import re
import subprocess
import sys

MEDIAN = re.compile(r"median:? ([\d,.]+) (\S+)")


def medians(command, cores):
    """(label, value, unit) of each median line `command` prints on the CPU set `cores`."""
    result = subprocess.run(command, capture_output=True, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, cores))
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed on cores {sorted(cores)}:\n{result.stderr[-3000:]}")
    rows = []
    for line in result.stdout.splitlines():
        print(f"  [{len(cores)} core(s)] {line}", flush=True)
        match = MEDIAN.search(line)
        if match:
            label = re.split(r"\bruns?\b|median", line)[0].strip(" :")
            rows.append((label, float(match.group(1).replace(",", "")), match.group(2)))
    return rows


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    command = [sys.executable, *sys.argv[1:]]
    every = os.sched_getaffinity(0)
    one = medians(command, {min(every)})
    all_cores = medians(command, every)
    if len(one) != len(all_cores):
        sys.exit(f"the two runs printed {len(one)} and {len(all_cores)} medians")
    print(f"\n| measurement | 1 core | {len(every)} cores | ratio |\n|---|---|---|---|")
    for (label, single, unit), (_, many, _) in zip(one, all_cores):
        print(f"| {label} ({unit}) | {single:,.0f} | {many:,.0f} | {many / single:.2f}x |")


if __name__ == "__main__":
    main()
