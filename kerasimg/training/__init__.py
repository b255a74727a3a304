"""Training: the fit driver and the reports it writes."""

from kerasimg.training.driver import FitConfig, FitResult, fit, load_run_config

__all__ = ["FitConfig", "FitResult", "fit", "load_run_config"]
