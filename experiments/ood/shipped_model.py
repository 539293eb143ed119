"""The shipped 5-layer MNIST model as a Keras file, for `run.py` (issue 32).

    python experiments/ood/shipped_model.py saved_models/mnist_lvae/3 /work/runs/mnist_lvae_3.keras

`saved_models/mnist_lvae/3` (test L_5000 -80.96) exists only as a SavedModel from before
`anomaly_score`. This rebuilds the model from the configuration in its provenance record,
assigns the SavedModel's weights and batch-norm statistics (mnist_study's
`load_saved_weights`), checks that the rebuilt model encodes 200 test digits as the
SavedModel's `encode` signature does (posterior means and variances, deterministic), and
writes the .keras file (a temporary path, then renamed).
"""

import argparse
import json
import os
import sys

import numpy as np
import tensorflow as tf

from keras_lvae import config as config_lib
from keras_lvae import data, training

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist_study"))
from continue_saved_model import load_saved_weights  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model")
    parser.add_argument("output", help="the .keras file to write")
    parser.add_argument("--data-dir", default=os.environ.get(data.DATA_DIR_ENV))
    args = parser.parse_args()
    folder, version = os.path.split(os.path.normpath(args.saved_model))
    record = os.path.join(os.path.dirname(folder),  # saved_models/mnist_lvae_3_provenance.json
                          f"{os.path.basename(folder)}_{version}_provenance.json")
    with open(record) as file:
        config = config_lib.from_dict(json.load(file)["configuration"])
    model = training.build_model(config, steps_per_epoch=1)
    model.build((None, *data.image_shape(config.data.dataset)))
    load_saved_weights(model, args.saved_model)

    images, _ = data.load_evaluation_arrays("mnist", "test", data_dir=args.data_dir)
    x = images[:200]
    served = tf.saved_model.load(args.saved_model).signatures["encode"](images=tf.constant(x))
    ours = model.encode(x)
    gaps = []
    for name in sorted(served):
        kind, layer = name.split("_")  # mean_1 ... variance_5, bottom to top
        mine = ours[int(layer) - 1][0 if kind == "mean" else 1]
        gaps.append(float(np.max(np.abs(np.asarray(mine) - served[name].numpy()))))
    print(f"encode: {len(gaps)} outputs, largest difference {max(gaps):.2e}")
    if max(gaps) > 1e-4:
        raise SystemExit("the rebuilt model does not encode as the SavedModel does")
    partial = args.output + ".partial.keras"
    model.save(partial)
    os.replace(partial, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
