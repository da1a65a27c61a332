"""The errors a user can cause or fix, for the launcher's one-line messages."""

from vicreg_haiku.checkpointing import CheckpointError
from vicreg_haiku.config_checks import ConfigError
from vicreg_haiku.sources import DataError
from vicreg_haiku.loop import NonFiniteError, Preempted
from vicreg_haiku.pretrained import MissingEncoderError
from vicreg_haiku.torch_weights import WeightsError

USER_ERRORS = (CheckpointError, ConfigError, DataError, MissingEncoderError,
               NonFiniteError, WeightsError)
__all__ = ["USER_ERRORS", "Preempted"]
