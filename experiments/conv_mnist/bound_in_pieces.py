"""L_1 and L_k of an exported version on a whole test set, in resumable pieces.

L_1000 of the shipped conv model on the 10,000 static-MNIST test digits takes about 2.4 h of
one core, longer than is safe in one process. This script scores pieces of `--piece-size`
digits through the SavedModel's `score` signature (`keras_lvae.saved_model_client.score_saved_model`,
what `lvae evaluate <SavedModel>` runs), writes each piece's per-digit bounds to its own CSV
(temporary file, then rename) and skips the pieces already written, so it can be stopped and
run again. `--worker w --workers n` takes every n-th piece from the w-th on, so n processes,
each pinned to a core, share the work. Once all pieces exist, `--summarise` writes the mean
and standard error of both bounds to `summary.json`.

Usage, from the repository root (one process per core):
    for w in 0 1; do TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c $w \\
        python experiments/conv_mnist/bound_in_pieces.py saved_models/conv_static_mnist_small/1 \\
        --data-dir ../shared/data --out /root/conv_l1000 --worker $w --workers 2 & done; wait
    python experiments/conv_mnist/bound_in_pieces.py saved_models/conv_static_mnist_small/1 \\
        --data-dir ../shared/data --out /root/conv_l1000 --summarise
"""
import argparse
import csv
import json
import os
import time

import numpy as np

from keras_lvae import data
from keras_lvae.report_statistics import mean_and_standard_error
from keras_lvae.saved_model_client import score_saved_model


def piece_path(out, index):
    return os.path.join(out, f"piece_{index:03d}.csv")


def score_pieces(args, images):
    pieces = range(0, len(images), args.piece_size)
    for index, start in enumerate(pieces):
        if index % args.workers != args.worker or os.path.isfile(piece_path(args.out, index)):
            continue
        began = time.perf_counter()
        # Seed `index`: every piece draws its own samples, whichever worker scores it.
        l_1, l_k = score_saved_model(args.model, images[start:start + args.piece_size],
                                     args.samples, batch_size=args.batch_size, seed=index)
        seconds = time.perf_counter() - began
        temporary = piece_path(args.out, index) + ".tmp"
        with open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["example", "L_1", f"L_{args.samples}", "seconds"])
            for offset, (a, b) in enumerate(zip(l_1, l_k)):
                writer.writerow([start + offset, repr(float(a)), repr(float(b)), f"{seconds:.1f}"])
        os.replace(temporary, piece_path(args.out, index))
        print(f"piece {index}: digits {start}..{start + len(l_k) - 1}, L_{args.samples} "
              f"{l_k.mean():.2f}, {seconds:.0f} s", flush=True)


def summarise(args, images):
    count = -(-len(images) // args.piece_size)
    missing = [i for i in range(count) if not os.path.isfile(piece_path(args.out, i))]
    if missing:
        raise SystemExit(f"pieces not scored yet: {missing}")
    rows = []
    for index in range(count):
        with open(piece_path(args.out, index), newline="") as file:
            rows.extend(csv.DictReader(file))
    l_1 = np.array([float(row["L_1"]) for row in rows])
    l_k = np.array([float(row[f"L_{args.samples}"]) for row in rows])
    seconds = sum(float(rows[i * args.piece_size]["seconds"]) for i in range(count))
    summary = {
        "model": args.model, "num_examples": len(l_k), "samples": args.samples,
        "piece_size": args.piece_size, "batch_size": args.batch_size,
        "L_1": dict(zip(("mean", "standard_error"), mean_and_standard_error(l_1))),
        f"L_{args.samples}": dict(zip(("mean", "standard_error"), mean_and_standard_error(l_k))),
        "scoring_seconds_summed_over_pieces": round(seconds, 1),
    }
    with open(os.path.join(args.out, "summary.json.tmp"), "w") as file:
        file.write(json.dumps(summary, indent=2) + "\n")
    os.replace(os.path.join(args.out, "summary.json.tmp"), os.path.join(args.out, "summary.json"))
    print(json.dumps(summary, indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="an exported SavedModel version")
    parser.add_argument("--data-dir", required=True, help="folder with the static MNIST files")
    parser.add_argument("--dataset", default="binarized_mnist")
    parser.add_argument("--out", required=True, help="folder for the pieces (outside the checkout)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--piece-size", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=20,
                        help="digits per `score` call (20 keeps the conv model near 4 GB)")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--summarise", action="store_true")
    args = parser.parse_args()
    if not 0 <= args.worker < args.workers:
        parser.error(f"--worker must be in [0, --workers); received {args.worker}")
    os.makedirs(args.out, exist_ok=True)
    images, _ = data.load_evaluation_arrays(args.dataset, "test", data_dir=args.data_dir)
    (summarise if args.summarise else score_pieces)(args, images)


if __name__ == "__main__":
    main()
