"""The errors a user can cause or fix, gathered for the launcher's one-line
messages; each class lives in the layer that raises it."""

from vicreg_haiku.data.shards import DataError
from vicreg_haiku.evaluation.embeddings import OutputError
from vicreg_haiku.evaluation.pretrained import MissingEncoderError
from vicreg_haiku.models.torch_weights import WeightsError
from vicreg_haiku.training.checkpointing import CheckpointError
from vicreg_haiku.training.loop import HostLost, NonFiniteError, Preempted
from vicreg_haiku.utils.errors import ConfigError

USER_ERRORS = (CheckpointError, ConfigError, DataError, MissingEncoderError,
               NonFiniteError, OutputError, WeightsError)
__all__ = ["USER_ERRORS", "HostLost", "Preempted"]
