"""Keep copies of a running `lvae train` run's checkpoint at chosen epochs.

A run keeps only its latest checkpoint; docs/results.md follows the long run
through copies taken at some epochs (snapshots/epoch_N.npz in its workdir), each
turned into a model by snapshot_to_model.py and evaluated. Start it beside the
run, from the repository root; it stops once the run is past the last wanted epoch:

    python docs/snapshot_watch.py runs/study/lvae5_long --epochs 300,400,500,510

The run replaces its checkpoint atomically, so a copy is always whole; each
snapshot is written atomically too.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from keras_lvae._files import atomic_write


def take_snapshot(workdir, epochs):
    """Copy workdir/checkpoint.npz to workdir/snapshots/epoch_N.npz if its epoch N is one of
    `epochs` and not copied yet. Returns N (None without a checkpoint)."""
    checkpoint = os.path.join(workdir, "checkpoint.npz")
    if not os.path.isfile(checkpoint):
        return None
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        copy = shutil.copyfile(checkpoint, os.path.join(scratch, "checkpoint.npz"))
        with np.load(copy) as stored:
            epoch = int(stored["epoch"])
        target = os.path.join(workdir, "snapshots", f"epoch_{epoch}.npz")
        if epoch in epochs and not os.path.exists(target):
            with open(copy, "rb") as source, atomic_write(target, "wb") as file:
                shutil.copyfileobj(source, file)
    return epoch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--epochs", required=True, help="comma-separated epochs, e.g. 300,400")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between looks")
    args = parser.parse_args(argv)
    try:
        epochs = {int(e) for e in args.epochs.split(",")}
    except ValueError:
        parser.error(f"--epochs: expected comma-separated ints, received {args.epochs!r}")
    epoch = None
    while epoch is None or epoch < max(epochs):  # a run past the last epoch has no more
        epoch = take_snapshot(args.workdir, epochs)
        time.sleep(args.every)
    taken = sorted(e for e in epochs if os.path.exists(
        os.path.join(args.workdir, "snapshots", f"epoch_{e}.npz")))
    print(f"snapshots of {args.workdir}: epochs {taken}")

if __name__ == "__main__":
    sys.exit(main())
