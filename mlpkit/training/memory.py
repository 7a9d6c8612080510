"""How much memory a training step will take, and whether the device has it: checked before compiling."""

from __future__ import annotations

import jax

from mlpkit.errors import MlpkitError
from mlpkit.models import ModelConfig
from mlpkit.training.batches import BatchPlan


# bytes of XLA's temporary buffers per (edge × feature × layer) of a float32 training step, one member; DimeNet++
# per (triplet × feature × layer). Measured with ``compile().memory_analysis()`` on 8 × 64-atom Si batches.
STEP_BYTES = {"painn": 130.0, "mace": 185.0, "dimenet++": 42.0}
MEMORY_SHARE = 0.8  # of the memory available, the most a training step may plan to take


def step_memory_bytes(model: ModelConfig, batch: tuple[int, int, int], members: int, float64: bool) -> float:
    """Estimated temporary memory of one training step on a batch of (frames, padded atoms, neighbours)."""
    frames, atoms, neighbors = batch
    pairs = frames * atoms * neighbors * (neighbors if model.architecture == "dimenet++" else 1)
    return STEP_BYTES[model.architecture] * pairs * model.features * model.layers * members * (2 if float64 else 1)


def available_memory_bytes() -> float:
    """Memory the default device can still give: its allocator's limit on a GPU, MemAvailable on a CPU host."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    with open("/proc/meminfo") as stream:
        fields = dict(line.split(":", 1) for line in stream)
    return float(fields["MemAvailable"].split()[0]) * 1024


def check_step_memory(config, plan: BatchPlan, available_bytes: float) -> None:
    """Refuse, before compiling, a training step whose padded batch would not fit in ``available_bytes``."""
    frames, atoms, neighbors = plan.largest_batch
    need = step_memory_bytes(config.model, plan.largest_batch, len(config.seeds), config.float64)
    if need > MEMORY_SHARE * available_bytes:
        smaller = max(1, int(frames * MEMORY_SHARE * available_bytes / need))
        raise MlpkitError(
            f"one training step needs about {need / 1e9:.1f} GB (batches of {frames} frames padded to {atoms} atoms × "
            f"{neighbors} neighbours, {len(config.seeds)} member(s)), and {available_bytes / 1e9:.1f} GB is available: "
            + (f"use a batch size of {smaller} (--batch-size), or " if smaller < frames else "")
            + "train without the largest frames, a smaller model (--features, --layers) or fewer members")
