"""Dataset loaders: ``load_dataset(name, data_dir=None, *, seed=0)`` → ``Dataset``."""

from data.datasets import AUDIO_DATASETS
from data.datasets import DATASETS
from data.datasets import Dataset
from data.datasets import load_dataset

__all__ = ["AUDIO_DATASETS", "DATASETS", "Dataset", "load_dataset"]
