"""Write the provenance of a shipped model: how it was trained and what it scores.

For saved_models/mnist_lvae/2 (issue 20): the recipe and its overrides, the epochs and
their wall time (from the run's history.csv), the software versions and the evaluation
report (L_1, L_k with standard errors, KL and active units per layer), and the commands
that reproduce the evaluation. Run from the repository root:

    python experiments/mnist_study/provenance.py RUN_DIR REPORT_JSON SAVED_MODEL_DIR \\
        --recipe mnist_paper --start "..." --set data.data_dir=../shared/data ... \\
        --output saved_models/mnist_lvae_2_provenance.json
"""

import argparse
import json
import os
import sys

from keras_lvae.config import to_dict
from keras_lvae.training import load_run_config, read_history


def provenance(run_dir, report, saved_model, recipe, overrides, start, commands):
    """The provenance dict of the model exported to `saved_model` from `run_dir`."""
    history = read_history(os.path.join(run_dir, "history.csv"))
    seconds = [s for s in history["seconds"] if s == s]  # NaN: rows of an older version
    layers = [{key: layer[key] for key in ("layer", "units", "kl", "active_units_kl",
                                          "active_units_cov")}
              for layer in report["latent_layers"]]
    return {
        "saved_model": saved_model,
        "recipe": recipe,
        "overrides": overrides,
        "start": start,
        "configuration": to_dict(load_run_config(run_dir)),
        "epochs": int(history["epoch"][-1]),
        "epochs_in_this_run": len(history["epoch"]),
        "training_hours_in_this_run": round(sum(seconds) / 3600, 2),
        "final_validation": {key: history[key][-1] for key in history
                             if key.startswith("val_")},
        "evaluation": {
            "dataset": report["dataset"], "split": report["split"],
            "num_examples": report["num_examples"], "settings": report["settings"],
            "log_likelihood": report["log_likelihood"], "latent_layers": layers,
            "timing_seconds": report["timing_seconds"],
        },
        "versions": report["versions"],
        "commands": commands,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("report", help="the evaluation's report.json")
    parser.add_argument("saved_model", help="the exported version folder")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--start", default="", help="where the run started from")
    parser.add_argument("--command", dest="commands", action="append", default=[],
                        help="a command that reproduces the numbers (repeatable)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    with open(args.report) as file:
        report = json.load(file)
    record = provenance(args.run_dir, report, args.saved_model, args.recipe, args.overrides,
                        args.start, args.commands)
    partial = args.output + ".partial"
    with open(partial, "w") as file:
        file.write(json.dumps(record, indent=2) + "\n")
    os.replace(partial, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
