"""Models ready for inference, once per process: files are loaded and cached, caller's
objects are used as they are or copied, never moved."""

from __future__ import annotations

import copy
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

import torch

from ..devices import resolve_device
from ..model import DEFAULT_MODEL, HypercolumnColorizer, load_model

__all__ = ["get_model", "weights_version", "loaded"]


#: Models loaded from files, most recently used last; at most _MODEL_CACHE_SIZE are kept.
_MODEL_CACHE: OrderedDict[tuple, HypercolumnColorizer] = OrderedDict()
_MODEL_CACHE_SIZE = 4
_MODEL_LOCK = threading.Lock()
#: Caller's model object -> (its device and weights version, the inference copy made from it).
_OBJECT_COPIES: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, HypercolumnColorizer]] = \
    weakref.WeakKeyDictionary()


def loaded(model: HypercolumnColorizer | Callable[[], HypercolumnColorizer]) -> HypercolumnColorizer:
    """``model`` itself, or what calling it returns when it is a function that loads one: a
    cluster job loads its model here only if guidance or a context vector needs it."""
    return model() if callable(model) and not isinstance(model, torch.nn.Module) else model


def _for_inference(model: HypercolumnColorizer) -> HypercolumnColorizer:
    """Evaluation mode, weights channels-last: oneDNN's convolutions and pooling are about
    2x faster on that layout (measured on this project's 2-core CPU); values are unchanged."""
    return model.to(memory_format=torch.channels_last).eval()


def get_model(model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL,
              device: str | torch.device = "auto") -> HypercolumnColorizer:
    """A model on ``device`` in evaluation mode; files are loaded once per process.

    ``model`` is ``"default"``, a ``.safetensors`` path, or a model object.  An object
    in training mode or on another device is copied (and the copy reused until its
    weights change), so the caller's model is never moved or switched to evaluation
    mode; one already in evaluation mode on ``device`` is used itself.
    """
    dev = resolve_device(device)
    if isinstance(model, torch.nn.Module):
        return _inference_copy(model, dev)
    key_path = str(model) if str(model) == DEFAULT_MODEL else os.path.abspath(os.fspath(model))
    mtime = os.path.getmtime(key_path) if key_path != DEFAULT_MODEL and os.path.exists(key_path) else None
    key = (key_path, mtime, str(dev))
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = _for_inference(load_model(model, device=dev))
            while len(_MODEL_CACHE) > _MODEL_CACHE_SIZE:
                _MODEL_CACHE.popitem(last=False)
        _MODEL_CACHE.move_to_end(key)
        return _MODEL_CACHE[key]


def weights_version(model: torch.nn.Module) -> int:
    """A number that grows whenever a parameter or buffer of ``model`` is changed in place."""
    return sum(int(t._version) for t in itertools.chain(model.parameters(), model.buffers()))


def _inference_copy(model: torch.nn.Module, dev: torch.device) -> HypercolumnColorizer:
    """The caller's model, ready for inference on ``dev``, without changing what it computes or where.

    A model on another device or in training mode (it may be mid-training) is copied:
    moving it, or switching it to evaluation mode, would change the caller's training.
    The copy is kept while the object lives and made again only when its weights
    change.  A model already in evaluation mode on ``dev`` is used itself, its weights
    only re-laid out channels-last (no value changes; a copy would double the memory of
    a VGG-16).
    """
    params = next(model.parameters(), None)
    state = (str(dev), weights_version(model))
    with _MODEL_LOCK:
        if not model.training and (params is None or params.device == dev):
            # Under the lock: two threads re-laying out one object's weights at once (two
            # colorize_to_zarr calls) crashed the process with a segmentation fault.
            return _for_inference(model)
        cached = _OBJECT_COPIES.get(model)
        if cached is None or cached[0] != state:
            cached = (state, _for_inference(copy.deepcopy(model).to(dev)))
            _OBJECT_COPIES[model] = cached
        # The caller's metadata, not a snapshot of it: a decoding calibrated or edited on the
        # object since the copy was made changes no weight, and must still be used.
        cached[1].config = getattr(model, "config", cached[1].config)
        return cached[1]
