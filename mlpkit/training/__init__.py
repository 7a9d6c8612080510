"""Training: padded batches, the loss and metrics, and the training loop (ensembles, EMA, early stopping)."""

from mlpkit.training.batches import Batch, BatchPlan
from mlpkit.training.evaluate import errors_by_label, evaluate, evaluate_members, history_csv, predict_members, write_history
from mlpkit.training.loss import LossWeights, metrics_from_sums
from mlpkit.training.train import TrainConfig, TrainResult, train

__all__ = ["Batch", "BatchPlan", "LossWeights", "TrainConfig", "TrainResult", "errors_by_label", "evaluate", "evaluate_members", "history_csv", "metrics_from_sums", "predict_members", "train",
           "write_history"]
