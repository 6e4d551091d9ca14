"""lsllm: label-supervised fine-tuning of decoder LLMs for text classification and word tagging."""

from lsllm.config import TrainConfig
from lsllm.errors import LsllmError
from lsllm.inference import Classifier, load
from lsllm.training import TrainResult, train

__all__ = ["Classifier", "LsllmError", "TrainConfig", "TrainResult", "load", "train"]
