"""Training, evaluation, checkpoints and prediction."""
from . import optimizer  # noqa: F401  (registers the LR schedule classes)
