"""Collect the study's numbers for experiments/mnist_study/README.md from runs/study/*/.

Reads each run's config.json, history.csv and evaluation/report.json (written by
`lvae evaluate`), prints the markdown tables (runs, KL per layer, paired
differences, depth sweep, the long run's trajectory), and draws the depth sweep
and the trajectory. Run from the repository root after experiments/mnist_study/mnist_study.sh and
the evaluations:

    python experiments/mnist_study/collect_results.py [--runs runs/study ...] [--output experiments/mnist_study/results]

Every run's record (config.json, history.csv, evaluation/report.json and
per_example.csv, and the reports of the long run's snapshots) is archived in
experiments/mnist_study/results/archive/<name>/, and the 5-layer runs' per-unit KL heatmaps and
latent PCA plots are copied to experiments/mnist_study/results/. The
archive is read after the --runs directories, so the tables keep the runs whose
working directories are gone (a run found in several places is taken from the
first).
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
from functools import cache

from keras_lvae import config as config_lib
from keras_lvae import data
from keras_lvae.plots import new_figure, save_figure  # headless figures, atomic PNG writes
from keras_lvae.training import read_history

LONG_RUN = "lvae5_long"
ARCHIVE = "archive"  # under --output
RECORD = ("config.json", "history.csv", os.path.join("evaluation", "report.json"),
          os.path.join("evaluation", "per_example.csv"))
SNAPSHOT = re.compile(r"epoch_(\d+)_evaluation$")
DEPTH_RUN = re.compile(r"depth(\d)_(ladder|bottom_up)")


def _load_report(path):
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        return json.load(file)


def load_run(directory):
    """{name, config, history, report, snapshots} of one run directory.

    `history` is {} if history.csv is absent (runs archived without it);
    `report` is None if the run has not been evaluated; `snapshots` maps epoch ->
    report of the snapshots/epoch_N_evaluation/ directories (the long run's).
    """
    with open(os.path.join(directory, "config.json")) as file:
        config = config_lib.from_dict(json.load(file))
    history_path = os.path.join(directory, "history.csv")
    history = read_history(history_path) if os.path.isfile(history_path) else {}
    snapshots = {}
    snapshot_dir = os.path.join(directory, "snapshots")
    if os.path.isdir(snapshot_dir):
        for name in os.listdir(snapshot_dir):
            match = SNAPSHOT.match(name)
            report = _load_report(os.path.join(snapshot_dir, name, "report.json"))
            if match and report:
                snapshots[int(match.group(1))] = report
    return {"name": os.path.basename(directory), "config": config, "history": history,
            "report": _load_report(os.path.join(directory, "evaluation", "report.json")),
            "snapshots": snapshots, "directory": directory}


def describe(config):
    """LVAE / VAE with +BN and +WU as in the paper's tables, +FT with a fine-tuning stage."""
    name = "LVAE" if config.model.inference == "ladder" else "VAE"
    if config.model.batch_norm:
        name += "+BN"
    if config.train.warmup_epochs:
        name += "+WU"
    if config.fine_tune.epochs:
        name += "+FT"
    return name


def epochs(run):
    """Finished epochs: the history's last, else (no history archived) the configured total."""
    if run["history"]:
        return int(run["history"]["epoch"][-1])
    return run["config"].train.epochs + run["config"].fine_tune.epochs


def importance_weighted(report):
    """{mean, standard_error} of the report's L_k (k = its number of importance samples)."""
    return report["log_likelihood"][f"L_{report['settings']['samples']}"]


def bound(report, key):
    value = report["log_likelihood"][key]
    return f"{value['mean']:.2f} ± {value['standard_error']:.2f}"


@cache
def _training_images(dataset, data_dir, validation_size):
    images, _ = data.load_arrays(dataset, "train", data_dir, validation_size)
    return len(images)


def training_speed(run):
    """'T min; median s/epoch; samples/s' over the epochs that carry a time."""
    if not run["history"]:
        return "not archived"
    seconds = [s for s in run["history"].get("seconds", []) if not math.isnan(s)]
    if not seconds:
        return "not recorded"
    d = run["config"].data
    per_epoch = _training_images(d.dataset, d.data_dir, d.validation_size) // d.batch_size
    per_epoch *= d.batch_size  # training batches drop the remainder
    median = statistics.median(seconds)
    note = "" if len(seconds) == len(run["history"]["epoch"]) else f" ({len(seconds)} timed)"
    return (f"{sum(seconds) / 60:.0f} min{note}, {median:.1f} s/epoch, "
            f"{per_epoch / median:,.0f} samples/s")


def evaluation_speed(report):
    """'T min, samples/s' of the importance-weighted pass of an evaluation."""
    k, n = report["settings"]["samples"], report["num_examples"]
    seconds = report["timing_seconds"]["log_likelihood"]
    return f"{report['timing_seconds']['total'] / 60:.1f} min, {k * n / seconds:,.0f} samples/s"


def run_row(run):
    """One row of the runs table."""
    config, report = run["config"], run["report"]
    cells = [run["name"], describe(config), str(len(config.model.latent_dims)),
             str(epochs(run)), training_speed(run)]
    if report is None:
        return "| " + " | ".join(cells + ["not evaluated"] * 5) + " |"
    k = report["settings"]["samples"]
    active = "/".join(str(layer["active_units_kl"]) for layer in report["latent_layers"])
    return "| " + " | ".join(cells + [
        bound(report, "L_1"), f"{bound(report, f'L_{k}')} (k={k})", bound(report, "bound_gap"),
        active, evaluation_speed(report)]) + " |"


RUNS_HEADER = ("| run | model | layers | epochs | training: time, median epoch, samples/s | "
               "test L_1 | test L_k | gap L_k − L_1 | active units z_1/…/z_L | "
               "evaluation: time, IW samples/s |\n|---|---|---|---|---|---|---|---|---|---|")


def kl_table(runs):
    """KL(q || p) per layer (nats) and active units of the evaluated 5-layer runs."""
    lines = ["| run | model | " + " | ".join(f"KL z_{i}" for i in range(1, 6)) +
             " | active (KL > 0.01) | active (Cov > 0.01) |", "|---" * 9 + "|"]
    for run in runs:
        report = run["report"]
        if report is None or len(report["latent_layers"]) != 5:
            continue
        layers = report["latent_layers"]
        lines.append("| " + " | ".join(
            [run["name"], describe(run["config"])] + [f"{layer['kl']:.2f}" for layer in layers] +
            ["/".join(str(layer[key]) for layer in layers)
             for key in ("active_units_kl", "active_units_cov")]) + " |")
    return "\n".join(lines)


def paired_difference(run, baseline):
    """Mean ± standard error over test digits of run's L_k minus baseline's (same digits, same k).

    The two models' bounds on each digit are correlated, so this is much more precise than
    comparing the two means with their own standard errors.
    """
    k = run["report"]["settings"]["samples"]
    if (baseline["report"]["settings"]["samples"] != k
            or baseline["report"]["num_examples"] != run["report"]["num_examples"]):
        raise ValueError(f"{run['name']} and {baseline['name']} were evaluated differently")
    a, b = (read_history(_per_example(r))[f"L_{k}"] for r in (run, baseline))
    differences = [x - y for x, y in zip(a, b)]
    return statistics.fmean(differences), statistics.stdev(differences) / len(differences) ** 0.5


def _per_example(run):
    return os.path.join(run["directory"], "evaluation", "per_example.csv")


def paired_table(runs, pairs):
    """Paired L_k differences (first minus second) for the (name, name) `pairs` whose runs
    both have per-digit results; pairs with a missing run or file are left out."""
    by_name = {run["name"]: run for run in runs
               if run["report"] and os.path.isfile(_per_example(run))}
    lines = ["| run − baseline | models | test L_k difference (paired over digits) |",
             "|---|---|---|"]
    for name, baseline in pairs:
        if name in by_name and baseline in by_name:
            mean, error = paired_difference(by_name[name], by_name[baseline])
            models = f"{describe(by_name[name]['config'])} − {describe(by_name[baseline]['config'])}"
            lines.append(f"| {name} − {baseline} | {models} | {mean:+.2f} ± {error:.2f} |")
    return "\n".join(lines)


def study_pairs(runs):
    """The comparisons of experiments/mnist_study/README.md: the 5-layer LVAE against each 5-layer VAE, and
    LVAE against VAE at every depth of the sweep."""
    names = {run["name"] for run in runs}
    pairs = [("lvae5_bn_wu", name) for name in ("vae5", "vae5_bn", "vae5_bn_wu")]
    pairs += [(f"depth{d}_ladder", f"depth{d}_bottom_up") for d in range(1, 6)]
    return [pair for pair in pairs if set(pair) <= names]


def load_runs(directories):
    """Every run (a folder with config.json) under `directories`; the first of a name wins."""
    runs = {}
    for directory in directories:
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            if name not in runs and os.path.isfile(os.path.join(directory, name, "config.json")):
                runs[name] = load_run(os.path.join(directory, name))
    return [runs[name] for name in sorted(runs)]


def archive(run, archive_dir):
    """Copy the run's record (the RECORD files it has, and its snapshots' reports) to
    archive_dir/<name>/, unless it is there."""
    target = os.path.join(archive_dir, run["name"])
    if os.path.abspath(run["directory"]) == os.path.abspath(target):
        return
    snapshots = [os.path.join("snapshots", f"epoch_{epoch}_evaluation", "report.json")
                 for epoch in run["snapshots"]]
    for relative in [*RECORD, *snapshots]:
        source = os.path.join(run["directory"], relative)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(target, relative)), exist_ok=True)
            shutil.copyfile(source, os.path.join(target, relative))


def depth_sweep(runs):
    """{inference: {depth: report}} of the depth{N}_{inference} runs that are evaluated."""
    sweep = {}
    for run in runs:
        match = DEPTH_RUN.fullmatch(run["name"])
        if match and run["report"]:
            sweep.setdefault(match.group(2), {})[int(match.group(1))] = run["report"]
    return sweep


def depth_table(sweep):
    depths = sorted({d for reports in sweep.values() for d in reports})
    lines = ["| stochastic layers | " + " | ".join(map(str, depths)) + " |",
             "|---" * (len(depths) + 1) + "|"]
    for inference, label in (("ladder", "LVAE+BN+WU"), ("bottom_up", "VAE+BN+WU")):
        reports = sweep.get(inference, {})
        cells = []
        for depth in depths:
            report = reports.get(depth)
            cells.append(f"{importance_weighted(report)['mean']:.2f}" if report else "–")
        lines.append(f"| {label}, test L_k | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trajectory(run, every=100):
    """Rows (epoch, training hours, untimed epochs so far, test L_1, snapshot report or None).

    Hours add up the epochs whose time history.csv recorded; `untimed` counts the
    others (epochs from before history.csv had a seconds column)."""
    history = run["history"]
    if not history:
        return []
    seconds = history.get("seconds", [math.nan] * len(history["epoch"]))
    rows, elapsed, untimed = [], 0.0, 0
    for index, epoch in enumerate(history["epoch"]):
        if math.isnan(seconds[index]):
            untimed += 1
        else:
            elapsed += seconds[index]
        if int(epoch) % every == 0 or index == len(history["epoch"]) - 1:
            rows.append((int(epoch), elapsed / 3600, untimed, -history["val_nelbo"][index],
                         run["snapshots"].get(int(epoch))))
    return rows


def trajectory_table(rows):
    lines = ["| epoch | training hours | test L_1 (moving BN, from history.csv) | "
             "snapshot L_k |", "|---|---|---|---|"]
    for epoch, hours, untimed, l1, report in rows:
        hours_cell = f"{hours:.2f}" + (f" + {untimed} untimed epochs" if untimed else "")
        snapshot = "–"
        if report:
            k, n = report["settings"]["samples"], report["num_examples"]
            snapshot = f"{bound(report, f'L_{k}')} (k={k}, {n:,} digits)"
        lines.append(f"| {epoch} | {hours_cell} | {l1:.2f} | {snapshot} |")
    return "\n".join(lines)


def plot_depth_sweep(sweep, path):
    figure = new_figure(5, 3.5)
    axes = figure.add_subplot()
    for inference, label in (("ladder", "LVAE+BN+WU"), ("bottom_up", "VAE+BN+WU")):
        reports = sweep.get(inference, {})
        depths = sorted(reports)
        values = [importance_weighted(reports[d])["mean"] for d in depths]
        axes.plot(depths, values, marker="o", label=label)
    axes.set_xlabel("stochastic layers")
    axes.set_ylabel("test L_k (nats)")
    axes.set_xticks(range(1, 6))
    axes.legend()
    figure.tight_layout()
    save_figure(figure, path)


def plot_trajectory(run, path):
    history = run["history"]
    figure = new_figure(6, 3.5)
    axes = figure.add_subplot()
    axes.plot(history["epoch"], [-v for v in history["val_nelbo"]], label="test L_1 (moving BN)")
    if run["snapshots"]:
        snapshot_epochs = sorted(run["snapshots"])
        axes.plot(snapshot_epochs,
                  [importance_weighted(run["snapshots"][e])["mean"] for e in snapshot_epochs],
                  marker="o", label="snapshots: L_k on part of the test set")
    if run["report"]:
        k = run["report"]["settings"]["samples"]
        axes.plot([epochs(run)], [importance_weighted(run["report"])["mean"]], marker="*",
                  markersize=10, linestyle="none", label=f"final test L_{k} (all digits)")
    axes.axhline(-81.74, color="gray", linestyle="--", label="paper, after fine-tuning")
    axes.set_xlabel("epoch")
    axes.set_ylabel("nats")
    axes.set_ylim(-95, -80)
    axes.legend()
    figure.tight_layout()
    save_figure(figure, path)


def study_tables(runs, sweep):
    """{name: markdown table} of everything experiments/mnist_study/README.md quotes, in the page's order;
    `sweep` is depth_sweep(runs)."""
    depth_runs = [run for run in runs if DEPTH_RUN.fullmatch(run["name"])]
    tables = {}
    for name, group in (("runs", [run for run in runs if run not in depth_runs]),
                        ("depth_runs", depth_runs)):
        tables[name] = "\n".join([RUNS_HEADER] + [run_row(run) for run in group])
    tables["kl"] = kl_table(runs)
    tables["paired"] = paired_table(runs, study_pairs(runs))
    if sweep:
        tables["depth"] = depth_table(sweep)
    for run in runs:
        if run["name"] == LONG_RUN and run["history"]:
            tables["trajectory"] = trajectory_table(trajectory(run))
    return tables


MARKED = re.compile(r"(<!-- BEGIN (\w+) -->\n)(.*?)(<!-- END \2 -->)", re.DOTALL)


def fill_markdown(path, tables):
    """Replace each `<!-- BEGIN name -->` ... `<!-- END name -->` block of the page at `path`
    with tables[name] (blocks without a table keep their text); written atomically."""
    with open(path) as file:
        text = file.read()
    def fill(match):
        table = tables.get(match.group(2))
        body = match.group(3) if table is None else table + "\n"
        return match.group(1) + body + match.group(4)
    partial = path + ".partial"  # never a half-written page
    with open(partial, "w") as file:
        file.write(MARKED.sub(fill, text))
    os.replace(partial, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", action="append",
                        help="a folder of run directories (repeatable; default runs/study)")
    parser.add_argument("--output", default="experiments/mnist_study/results")
    parser.add_argument("--markdown", help="a page (experiments/mnist_study/README.md) whose marked blocks to fill")
    args = parser.parse_args(argv)
    archive_dir = os.path.join(args.output, ARCHIVE)
    runs = load_runs([*(args.runs or ["runs/study"]), archive_dir])
    os.makedirs(args.output, exist_ok=True)
    sweep = depth_sweep(runs)
    tables = study_tables(runs, sweep)
    print("\n\n".join(tables.values()))
    if args.markdown:
        fill_markdown(args.markdown, tables)
    if sweep:
        plot_depth_sweep(sweep, os.path.join(args.output, "depth_sweep.png"))
    for run in runs:
        if run["name"] == LONG_RUN and run["history"]:
            plot_trajectory(run, os.path.join(args.output, "trajectory.png"))
        archive(run, archive_dir)
        plots = (run["report"] or {}).get("plots", {})
        for plot in ("kl_per_unit", "latent_pca"):
            source = os.path.join(run["directory"], "evaluation", plots.get(plot, ""))
            five_layers = len(run["config"].model.latent_dims) == 5
            if plot in plots and os.path.isfile(source) and five_layers:
                shutil.copyfile(source, os.path.join(args.output, f"{run['name']}_{plot}.png"))


if __name__ == "__main__":
    main()
