"""Training colorizers on folders of colour images (``napari-colorize train``).

* :mod:`.data` -- finding and decoding images, random crops, sparse targets.
* :mod:`.setup` -- every check, then the model, data and optimizer of a run.
* :mod:`.trainer` -- the loop (:func:`train`), learning-rate schedule, validation.
* :mod:`.checkpoint` -- resumable state in safetensors + JSON, no pickle.
"""

from .trainer import TrainConfig, compute_loss, learning_rate, train, validate

__all__ = ["TrainConfig", "train", "compute_loss", "learning_rate", "validate"]
