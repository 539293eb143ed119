"""`lvae evaluate --ood-dataset`: the out-of-distribution section of the evaluation.

Scores the model's evaluated images and another dataset's test split with
`keras_lvae.ood_scores`, prints the `ood_report` table and writes `ood_report.json`
(with every example's scores) and two plots beside the evaluation.
"""

import json
import os

from keras_lvae import data, evaluation_data, ood
from keras_lvae._files import atomic_write


def load_outside(model, binarize, args):
    """The test split of --ood-dataset (an `EvaluationSplit`), loaded and checked before
    any evaluation runs: errors name the flags the user typed."""
    if args.ood_dataset not in data.list_datasets():
        raise ValueError(f"--ood-dataset: expected one of {data.list_datasets()}, received "
                         f"{args.ood_dataset!r}")
    source = data.SOURCES[args.ood_dataset]
    image_size = model.feature_shape[0] if source.user_folder else None
    try:
        outside = evaluation_data.load(args.ood_dataset, "test", batch_size=args.batch_size,
                                       binarize=binarize, data_dir=args.ood_data_dir,
                                       image_size=image_size, max_examples=args.max_examples,
                                       seed=args.seed)
    except ValueError as error:  # the data layer names --data-dir; here it is --ood-data-dir
        raise ValueError(f"--ood-dataset {args.ood_dataset}: "
                         + str(error).replace("--data-dir", "--ood-data-dir")) from None
    if tuple(outside.shape) != tuple(model.feature_shape):
        raise ValueError(f"--ood-dataset {args.ood_dataset} has images of shape "
                         f"{tuple(outside.shape)}, but the model was trained on "
                         f"{model.feature_shape}")
    bounds = model.num_layers
    rows = ood.rows_per_pass(model, bounds)
    print(f"out-of-distribution: {args.ood_dataset} test, {outside.count} examples; "
          f"{bounds} bounds with {args.ood_samples} samples each, sharing every pass (about "
          f"{bounds + 1}x the time of L_{args.ood_samples} per image), at most {rows} rows a "
          "pass", flush=True)
    return outside


def report(model, split, outside, args, output):
    """Score the `outside` split (`load_outside`) against the evaluated `split` (an
    `EvaluationSplit`); print the table, write ood_report.json (and its plots).
    Returns {plot name: file name}."""
    k = args.ood_samples
    scores_in = ood.ood_scores(model, split.images, k, batch_size=args.batch_size)
    scores_out = ood.ood_scores(model, outside.images, k, batch_size=args.batch_size)
    report = ood.ood_report(scores_in, scores_out)
    with atomic_write(os.path.join(output, "ood_report.json")) as file:
        file.write(json.dumps({
            "in": {"dataset": args.dataset, "split": args.split, "examples": split.count},
            "out": {"dataset": args.ood_dataset, "split": "test", "examples": outside.count,
                    "subset": outside.subset},
            "samples": k, "positive": "out-of-distribution", "scores": report,
            "per_example": {"in": {n: v.tolist() for n, v in scores_in.items()},
                            "out": {n: v.tolist() for n, v in scores_out.items()}},
        }, indent=2) + "\n")
    print(f"out-of-distribution: {args.ood_dataset} test ({outside.count} examples) against "
          f"{args.dataset} {args.split}, {k} samples per bound; higher scores flag out")
    print(f"{'score':>8}  AUROC  AUPRC  FPR95")
    for name, row in report.items():
        print(f"{name:>8}  {row['auroc']:.3f}  {row['auprc']:.3f}  {row['fpr95']:.3f}")
    if args.no_plots:
        return {}
    from keras_lvae import plots

    plots.plot_roc_curves(scores_in, scores_out, os.path.join(output, "ood_roc.png"))
    plots.plot_score_histograms(scores_in, scores_out, os.path.join(output, "ood_scores.png"))
    return {"ood_roc": "ood_roc.png", "ood_scores": "ood_scores.png"}
