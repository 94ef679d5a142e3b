"""Run settings (xcnn/train/config.py): the schedule, the epoch order, the command line of a run."""
from __future__ import annotations

import numpy as np
import pytest

from xcnn.train.config import RunConfig, epoch_permutation, lr_at


def test_cosine_schedule_decays_to_zero_over_the_run():
    c = RunConfig(lr=0.2, lr_schedule="cosine")
    assert lr_at(c, 0, 100) == pytest.approx(0.2)
    assert lr_at(c, 50, 100) == pytest.approx(0.1)
    assert lr_at(c, 100, 100) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(RunConfig(lr=0.2), 77, 100) == 0.2


def test_the_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = epoch_permutation(100, 3, 5)
    assert np.array_equal(a, epoch_permutation(100, 3, 5)) and sorted(a) == list(range(100))
    assert not np.array_equal(a, epoch_permutation(100, 3, 6))
    assert not np.array_equal(a, epoch_permutation(100, 4, 5))


def test_the_command_line_reproduces_the_settings():
    c = RunConfig(model="mlp2", epochs=40, weight_decay=1e-4, device="cpu", out="runs/x", save_epochs=[0, 5],
                  dtype="float64", cuda_graph=False)
    line = c.command()
    assert line == ("python -m xcnn.train --model mlp2 --epochs 40 --weight-decay 0.0001 --device cpu --out runs/x "
                    "--save-epochs 0,5 --float64")
    assert RunConfig().command() == "python -m xcnn.train --model seed-cnn --epochs 30 --device auto --out runs/seed-cnn"
