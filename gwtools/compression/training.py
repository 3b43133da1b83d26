"""The one training loop of the compression fits: Adam, a plateau schedule, early stopping.

Both the KAN density fit (:func:`gwtools.compression.kan_density.fit`: rounds are epochs over
shuffled minibatches) and the symbolic stage's fine-tuning
(:mod:`gwtools.compression.symbolic`: rounds are a fixed number of steps on random
minibatches) run :func:`train`.  Every random choice comes from the batch plan the caller
passes (built on an explicit :class:`numpy.random.Generator`), so a fit is reproducible from
its seed without touching torch's global generator.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["TrainingResult", "TrainingSchedule", "train"]

logger = logging.getLogger(__name__)

#: Smallest decrease of the validation loss (nats) that counts as an improvement.
_IMPROVEMENT = 1e-4


@dataclass(frozen=True)
class TrainingSchedule:
    """How :func:`train` steps, slows down and stops.

    Parameters
    ----------
    learning_rate, weight_decay : float
        Adam settings.
    max_rounds : int
        Rounds at most (a round: the batches of one :func:`train` ``batches`` call, then a
        validation).
    patience : int
        Stop after this many rounds without a better validation loss.
    plateau_patience : int
        Rounds without improvement before the learning rate halves
        (:class:`torch.optim.lr_scheduler.ReduceLROnPlateau`).
    restore_on_decay : bool
        When the learning rate halves, go on from the best parameters so far: a step size
        that has stopped helping may also have thrown the parameters off.
    min_learning_rate_factor : float or None
        Stop once the learning rate has fallen below this fraction of the initial one.
    start_from_initial : bool
        Count the parameters as given as the first candidate (validated before any step);
        otherwise only trained states are, and a run whose every validation loss is
        non-finite has no best state.
    """

    learning_rate: float
    max_rounds: int
    patience: int
    plateau_patience: int
    weight_decay: float = 0.0
    restore_on_decay: bool = False
    min_learning_rate_factor: float | None = None
    start_from_initial: bool = False

    def __post_init__(self) -> None:
        if not self.learning_rate > 0.0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("max_rounds", "patience", "plateau_patience"):
            if getattr(self, name) < (0 if name == "max_rounds" else 1):
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class TrainingResult:
    """What :func:`train` did.

    Attributes
    ----------
    best_loss : float
        Best validation loss (inf if none was finite).
    best_round : int or None
        Round of the best state (-1: the initial parameters); None if there is none.
    train_loss, validation_loss : tuple of float
        Per round: mean training loss over its batches, and the validation loss.
    steps : int
        Optimiser steps taken.
    """

    best_loss: float
    best_round: int | None
    train_loss: tuple[float, ...]
    validation_loss: tuple[float, ...]
    steps: int


def train(
    module: torch.nn.Module,
    parameters: Sequence[torch.Tensor],
    loss: Callable[[torch.Tensor], torch.Tensor],
    z_train: torch.Tensor,
    z_val: torch.Tensor,
    batches: Callable[[int], Iterable[torch.Tensor]],
    schedule: TrainingSchedule,
    *,
    before_round: Callable[[int], None] | None = None,
    label: str = "training",
) -> TrainingResult:
    """Minimise ``loss`` over ``parameters`` with Adam; leave ``module`` in its best state.

    Parameters
    ----------
    module : torch.nn.Module
        Holds ``parameters``; its state dict is what is kept and restored.
    parameters : sequence of torch.Tensor
        The free parameters.
    loss : callable
        Mean loss (a scalar tensor) of a batch of rows of ``z_train`` or of ``z_val``.
    z_train, z_val : torch.Tensor, shape (n, d) and (m, d)
    batches : callable
        ``batches(round)``: the row indices of ``z_train`` of each step of that round.
    schedule : TrainingSchedule
    before_round : callable, optional
        Called with the round number before its batches (e.g. to move spline grids).
    label : str
        Name of the run in the log.

    Returns
    -------
    TrainingResult
    """
    optimiser = torch.optim.Adam(parameters, lr=schedule.learning_rate,
                                 weight_decay=schedule.weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, factor=0.5, patience=schedule.plateau_patience)
    best, best_state, best_round = math.inf, None, None
    if schedule.start_from_initial:
        with torch.no_grad():
            best = float(loss(z_val))
        best_state, best_round = copy.deepcopy(module.state_dict()), -1
        logger.info("%s from validation loss %.4f", label, best)
    train_history, val_history = [], []
    since_best = steps = 0
    for round_index in range(schedule.max_rounds):
        if before_round is not None:
            before_round(round_index)
        total, count = 0.0, 0
        for rows in batches(round_index):
            batch = z_train[rows]
            value = loss(batch)
            optimiser.zero_grad()
            value.backward()
            optimiser.step()
            steps += 1
            total += float(value.detach()) * len(batch)
            count += len(batch)
        with torch.no_grad():
            val = float(loss(z_val))
        train_history.append(total / max(count, 1))
        val_history.append(val)
        rate = optimiser.param_groups[0]["lr"]
        plateau.step(val if math.isfinite(val) else math.inf)
        if (schedule.restore_on_decay and best_state is not None
                and optimiser.param_groups[0]["lr"] < rate):
            module.load_state_dict(best_state)
        if math.isfinite(val) and val < best - _IMPROVEMENT:
            best, best_round, since_best = val, round_index, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            since_best += 1
        floor = schedule.min_learning_rate_factor
        if since_best >= schedule.patience or (
                floor is not None and optimiser.param_groups[0]["lr"] < schedule.learning_rate * floor):
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    return TrainingResult(best_loss=best, best_round=best_round, train_loss=tuple(train_history),
                          validation_loss=tuple(val_history), steps=steps)
