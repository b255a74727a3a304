"""``python -m fake_recipe_trials recipe ...``: ``kerasimg.tune`` whose trials only record themselves.

Used by the chief/worker test: each trial scores its learning rate by a made-up rule in a
second and leaves a marker naming its trial and process, so several processes can complete a
search in seconds.
"""

from __future__ import annotations

import math
import os
import sys
import time

from kerasimg import tune
from kerasimg.tuning.oracle import OBJECTIVE
from kerasimg.tuning.recipe_search import RecipeTuner


def fake_trial(self, trial, *args, **kwargs):
    time.sleep(1.0)
    record_dir = self.recipe_search.project_dir.parent / "ran"
    record_dir.mkdir(parents=True, exist_ok=True)
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "single")
    (record_dir / f"{trial.trial_id}.{tuner_id}.{os.getpid()}").touch()
    lr = trial.hyperparameters.values["lr"]
    return {OBJECTIVE: 1.0 - abs(math.log10(lr) + 3) / 3, "epochs_trained": 1.0, "train_seconds": 1.0}


if __name__ == "__main__":
    RecipeTuner.run_trial = fake_trial
    sys.exit(tune.main(sys.argv[1:]))
