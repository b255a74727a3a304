"""Why a model errs: per-image predictions, metrics, calibration, worst mistakes, Grad-CAM, reports."""
