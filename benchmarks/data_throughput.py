"""Images per second of the MNIST training pipeline with dynamic binarization.

Reads the 60,000 MNIST training images from KERAS_LVAE_DATA_DIR (or --data-dir),
builds `load_dataset("mnist", "train", batch_size=256)` and times full epochs
after a first one that fills the cache. Target: at least 10x the model's
training throughput, about 100,000 images/s on a 2-core machine.

    python benchmarks/data_throughput.py --data-dir ../shared/data --epochs 5
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_lvae import data  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get(data.DATA_DIR_ENV))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    ds = data.load_dataset("mnist", "train", batch_size=args.batch_size, data_dir=args.data_dir)
    for _ in ds:  # first epoch: fill the cache
        pass
    rates = []
    for _ in range(args.epochs):
        start, images = time.perf_counter(), 0
        for batch in ds:
            images += int(batch.shape[0])
        rates.append(images / (time.perf_counter() - start))
    print(f"MNIST train, batch {args.batch_size}, dynamic binarization: runs "
          + ", ".join(f"{r:,.0f}" for r in rates)
          + f"  median: {statistics.median(rates):,.0f} images/s")


if __name__ == "__main__":
    main()
