"""Turn a copy of a run's checkpoint.npz into a .keras model that `lvae evaluate` reads.

docs/results.md follows the long LVAE run through copies of its checkpoint taken
every 100 epochs (runs/study/lvae5_long/snapshots/epoch_N.npz). Run from the
repository root:

    python docs/snapshot_to_model.py runs/study/lvae5_long snapshots/epoch_300.npz
    lvae evaluate runs/study/lvae5_long/snapshots/epoch_300.keras --dataset mnist \\
        --data-dir ../shared/data --samples 1000 --max-examples 1000 --bn-statistics recompute \\
        --output runs/study/lvae5_long/snapshots/epoch_300_evaluation

The model is written next to the checkpoint (epoch_300.keras), atomically.
"""

import argparse
import json
import os
import sys

from keras_lvae import config as config_lib
from keras_lvae import training


def snapshot_to_model(workdir, checkpoint):
    """Build the run's model, load `checkpoint` (relative to `workdir`) and save it as .keras."""
    checkpoint_path = os.path.join(workdir, checkpoint)
    if not checkpoint_path.endswith(".npz") or not os.path.isfile(checkpoint_path):
        raise ValueError(f"checkpoint: expected an existing .npz file, received {checkpoint_path!r}")
    with open(os.path.join(workdir, training.CONFIG_FILE)) as file:
        config = config_lib.from_dict(json.load(file))
    train_ds, _, _ = training.datasets(config)
    steps_per_epoch = int(train_ds.cardinality())
    model = training.build_model(config, steps_per_epoch)
    model.build(train_ds.element_spec.shape)
    training.compile_model(model, config, steps_per_epoch)
    epoch = training.restore_checkpoint(model, checkpoint_path)
    output = checkpoint_path[:-len(".npz")] + ".keras"
    temporary = output[:-len(".keras")] + ".tmp.keras"  # Keras insists on the suffix
    model.save(temporary)
    os.replace(temporary, output)
    return output, epoch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", help="the run directory (holds config.json)")
    parser.add_argument("checkpoint", help="the .npz checkpoint, relative to workdir")
    args = parser.parse_args(argv)
    output, epoch = snapshot_to_model(args.workdir, args.checkpoint)
    print(f"wrote {output} (after epoch {epoch})")


if __name__ == "__main__":
    sys.exit(main())
