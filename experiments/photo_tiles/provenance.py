"""Write saved_models/photo_tiles_<version>_provenance.json from the run folder, its
evaluation report and the codec benchmark's figures (see ship.sh, which runs it).

    python experiments/photo_tiles/provenance.py RUN EVALUATION_DIR VERSION CODECS_TXT
"""

import csv
import json
import os
import platform
import subprocess
import sys
from importlib import metadata

RUN, EVALUATION, VERSION, CODECS = sys.argv[1:5]
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def codec_rows(path):
    """{name: bits/dim} from the per-tile table `benchmarks/codecs.py` prints
    (`| name | mean ± standard error |` rows under `| code | bits/dim |`)."""
    rows, table = {}, False
    for line in open(path):
        if line.startswith("| code |"):
            table = True
        elif table and line.startswith("| ") and not line.startswith("|---"):
            name, value = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[name] = float(value.split()[0])
        elif table and rows and not line.strip():
            break
    return rows


with open(os.path.join(RUN, "history.csv")) as file:
    history = list(csv.DictReader(file))
with open(os.path.join(RUN, "config.json")) as file:
    configuration = json.load(file)
with open(os.path.join(EVALUATION, "report.json")) as file:
    evaluation = json.load(file)
# Per layer, the summary; the per-unit arrays stay in the evaluation's report.json.
evaluation["latent_layers"] = [
    {key: layer[key] for key in ("layer", "shape", "units", "kl", "active_units_kl",
                                 "active_units_cov", "active_channels")}
    for layer in evaluation["latent_layers"]]
evaluation["report"] = os.path.relpath(os.path.join(EVALUATION, "report.json"), REPO)
head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                      text=True, check=True).stdout.strip()
last = history[-1]
provenance = {
    "saved_model": f"saved_models/photo_tiles/{VERSION}",
    "recipe": "photo_tiles",
    "overrides": [],
    "start": ("from scratch in a run folder outside the checkout (/work/runs/photo_tiles), "
              "resumed session by session: code of 934a74d (2026-12-05) for epochs 1-44, then "
              "96f1332 on (the moving average's warm-up, which let the averages catch up with "
              f"the weights); exported at commit {head}"),
    "configuration": configuration,
    "epochs": int(float(last["epoch"])),
    "training_hours": round(sum(float(row["seconds"]) for row in history) / 3600, 2),
    "training_note": ("one CPU core (taskset -c 1, one TensorFlow thread) beside other work; "
                      "epochs that were paused (SIGSTOP) while test suites ran count their "
                      "pause in `seconds`"),
    "history": "experiments/photo_tiles/results/history.csv",
    "final_epoch": {key: float(value) for key, value in last.items()},
    "evaluation": evaluation,
    "codecs_on_the_same_tiles_bits_per_dim": codec_rows(CODECS),
    "versions": {"python": platform.python_version(),
                 **{name: metadata.version(name) for name in
                    ("keras", "tensorflow", "tensorflow-probability", "numpy", "pillow")}},
    "commands": [
        "TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 1 lvae train photo_tiles "
        "--workdir /work/runs/photo_tiles  # repeated each session until the epoch above",
        "sh experiments/photo_tiles/ship.sh /work/runs/photo_tiles VERSION",
    ],
}
target = os.path.join(REPO, "saved_models", f"photo_tiles_{VERSION}_provenance.json")
with open(target + ".partial", "w") as file:
    json.dump(provenance, file, indent=2)
    file.write("\n")
os.replace(target + ".partial", target)
print(f"wrote {target}")
