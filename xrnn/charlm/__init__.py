"""A character-level language model on xrnn: train on names, evaluate, sample new ones.

>>> from xrnn import charlm
>>> model, history = charlm.train()  # the bundled names, ~30 s   # doctest: +SKIP
>>> model.sample(5, seed=0)  # five invented names   # doctest: +SKIP
>>> model.evaluate(charlm.holdout_split(charlm.bundled_names())[1])  # doctest: +SKIP
"""

from xrnn.charlm.checkpoint import FORMAT_VERSION, load
from xrnn.charlm.corpus import bundled_names, clean_dino_names, holdout_split, read_names
from xrnn.charlm.model import CharModel
from xrnn.charlm.optim import SGD, Adam, clip, clip_by_global_norm
from xrnn.charlm.train import train
from xrnn.charlm.vocab import Vocabulary

__all__ = [
    "FORMAT_VERSION",
    "SGD",
    "Adam",
    "CharModel",
    "Vocabulary",
    "bundled_names",
    "clean_dino_names",
    "clip",
    "clip_by_global_norm",
    "holdout_split",
    "load",
    "read_names",
    "train",
]
