"""Data sources (folder, Intel layout, tfds:NAME, the built-in scenes set) and the tf.data pipeline."""

from kerasimg.data.pipeline import AUGMENTATIONS, image_dataset, load_image, unlabelled_dataset
from kerasimg.data.sources import LabelledData, load_data, load_folder
from kerasimg.data.splits import FileSplit, stratified_split

__all__ = [
    "AUGMENTATIONS",
    "FileSplit",
    "LabelledData",
    "image_dataset",
    "load_data",
    "load_folder",
    "load_image",
    "stratified_split",
    "unlabelled_dataset",
]
