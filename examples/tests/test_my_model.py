"""cvdoctor inside a test suite: `pytest examples/tests -v`.

Each test below is a pattern to copy. Failures read like cvdoctor's own report: the measured
problem, the one-line fix and `cvdoctor explain <recipe>`.
"""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from my_model import build_model, build_optimizer, get_batch
from pytest_cvdoctor import (assert_batch_independent, assert_gradients_flow,
                             assert_initial_loss_ok, assert_optimizer_covers_model,
                             assert_overfits_one_batch)


def test_model_is_healthy(cvdoctor):
    """Every quick model check at once; the fixture applies --cvdoctor-budget/--cvdoctor-strict."""
    model = build_model()
    optimizer = build_optimizer(model.parameters())
    report = cvdoctor.check_model(model, get_batch(), optimizer=optimizer,
                                  ignore=["model.overfit_batch"])
    cvdoctor.assert_healthy(report)


def test_gradients_reach_every_layer():
    assert_gradients_flow(build_model(), get_batch())


def test_initial_loss_is_ln_num_classes():
    assert_initial_loss_ok(build_model(), get_batch())


def test_samples_do_not_mix():
    assert_batch_independent(build_model(), get_batch())


def test_optimizer_sees_every_parameter():
    model = build_model()
    optimizer = build_optimizer(model.parameters())
    assert_optimizer_covers_model(model, get_batch(), optimizer=optimizer)


def test_memorizes_one_batch():
    model = build_model()
    assert_overfits_one_batch(model, get_batch(), optimizer=build_optimizer(model.parameters()),
                              budget=60)


def test_torch_works_here(cvdoctor_env):
    """The session's environment report, computed once, on first use."""
    assert cvdoctor_env["env.torch"].status == "pass", str(cvdoctor_env)


@pytest.mark.cvdoctor_requires(min_shm="256MiB")
def test_dataloader_workers_share_batches():
    """Skipped, with the measured /dev/shm size and the recipe, in a container started without
    --shm-size or --ipc=host."""
    images, labels = get_batch(32)
    loader = DataLoader(TensorDataset(images, labels), batch_size=8, num_workers=2)
    assert sum(len(y) for _, y in loader) == 32


@pytest.mark.cvdoctor_requires(gpu=True)
def test_one_training_step_on_the_gpu():
    """Skipped on a CPU runner, saying why there is no usable GPU."""
    model = build_model().cuda()
    images, labels = (t.cuda() for t in get_batch())
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    assert torch.isfinite(loss)
