"""Data: image I/O, the public datasets' loaders, the rain renderer and the embedded benchmark."""

from .benchmark import DOMAIN_DATASETS, SPLITS, build_benchmark, default_benchmark_root, layout_of, split_root
from .datasets import LAYOUTS, PairedImageDataset, UnpairedImageDataset, detect_layout, find_pairs
from .errors import DatasetError
from .imageio import read_image, write_image
from .synthetic import DOMAINS, render

__all__ = [
    "DOMAINS", "DOMAIN_DATASETS", "LAYOUTS", "SPLITS", "DatasetError", "PairedImageDataset",
    "UnpairedImageDataset", "build_benchmark", "default_benchmark_root", "detect_layout", "find_pairs",
    "layout_of", "read_image", "render", "split_root", "write_image",
]
