"""Peak memory and time of `ood_scores` on a colour ladder: passes capped by their likelihood
parameters (`ood.PARAMETERS_PER_PASS`, today's) or of 4,096 rows (before issue 46).

    taskset -c 0 python benchmarks/ood_memory.py --passes capped
    taskset -c 0 python benchmarks/ood_memory.py --passes rows

Builds the `photos` recipe's ladder (3 layers, 32 x 32 colour, 10 logistics; weights as
initialised: memory and time do not depend on them) and scores 100 random tiles with 20
samples per bound (all three bounds). Run each in its own process: the peak is the process's
`ru_maxrss`.
"""

import argparse
import os
import resource
import time

import numpy as np

from keras_lvae import config, ood

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", choices=["capped", "rows"], default="capped")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    if args.passes == "rows":
        ood.PARAMETERS_PER_PASS = 1 << 62  # no cap: DEFAULT_ROWS_PER_PASS rows a pass
    recipe = config.load_recipe(os.path.join(HERE, "..", "recipes", "photos.py"))
    model_class, arguments = recipe.model.model_arguments()
    model = model_class(**arguments, seed=0)
    x = np.random.default_rng(0).integers(0, 256, (args.images, 32, 32, 3)) / np.float32(255)
    model(x[:2])
    start = time.perf_counter()
    ood.ood_scores(model, x, num_samples=args.samples)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"passes {args.passes}: {ood.rows_per_pass(model, model.num_layers) if args.passes == 'capped' else ood.DEFAULT_ROWS_PER_PASS} "
          f"rows, {seconds:.1f} s, peak {peak:.2f} GiB")


if __name__ == "__main__":
    main()
