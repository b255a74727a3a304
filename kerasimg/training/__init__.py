"""Training: the arguments and their resolution, the fit driver, the run directory and its reports."""

from kerasimg.training.config import FitConfig, ResolvedFit
from kerasimg.training.driver import FitResult, fit
from kerasimg.training.resume import load_run_config
from kerasimg.training.run import Run

__all__ = ["FitConfig", "FitResult", "ResolvedFit", "Run", "fit", "load_run_config"]
