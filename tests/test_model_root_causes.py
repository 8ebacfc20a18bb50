"""One root cause, one failure: when a later model check fails for the reason an earlier one
already found, it shares that finding's recipe, so the report shows it as a consequence
("follows from model.data") and JSON gives it `caused_by`. Exit codes do not change.

Each pair runs end to end: through cvdoctor.check_model, and through the CLI for the example
file the README shows.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import cvdoctor
from cvdoctor.cli import cli
from modelzoo import SmallCNN, image_batch

pytestmark = pytest.mark.usefixtures("one_thread")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _pair(report, cause: str, consequence: str, recipe: str):
    (first,) = [f for f in report.findings if f.check == cause and f.recipe == recipe]
    (second,) = [f for f in report.findings if f.check == consequence and f.recipe == recipe]
    assert first.status == "fail" and first.caused_by is None, first
    assert second.caused_by == cause, second
    assert second.status in ("warn", "fail")  # the status is kept: exit codes are unchanged
    assert second.to_dict()["caused_by"] == cause
    text = str(report)
    assert f"follows from {cause}" in text, text
    return first, second


def test_off_by_one_labels_fail_data_and_the_forward_follows():
    x, y = image_batch(16)
    report = cvdoctor.check_model(SmallCNN(), (x, y + 1),
                                  select=["model.data", "model.forward"])
    _pair(report, "model.data", "model.forward", "target-out-of-bounds")
    assert report.status == "fail" and not report.ok


def test_wide_head_fails_output_and_the_initial_loss_follows():
    torch.manual_seed(0)
    report = cvdoctor.check_model(SmallCNN(num_classes=1000), image_batch(16), num_classes=10,
                                  select=["model.output", "model.initial_loss"])
    _pair(report, "model.output", "model.initial_loss", "head-size-mismatch")


def test_an_over_confident_init_warns_and_the_large_gradients_follow():
    """Stock MNASNet with a 10-class head: logits ~6x too large at init, so the first gradients
    are large too. One cause, shown once, with the gradient warning under it."""
    from torchvision.models import mnasnet0_5
    torch.manual_seed(0)
    report = cvdoctor.check_model(mnasnet0_5(weights=None, num_classes=10),
                                  image_batch(8, size=64),
                                  select=["model.initial_loss", "model.gradients"])
    (cause,) = report.get_all("model.initial_loss")
    assert (cause.status, cause.recipe) == ("warn", "initial-loss-too-high"), cause.message
    (grad,) = report.get_all("model.gradients")
    assert grad.recipe == "exploding-gradients" and grad.caused_by == "model.initial_loss", grad
    assert "follows from model.initial_loss" in str(report)


@pytest.mark.parametrize("cast", ["batch_float64", "model_half"])
def test_dtype_mismatch_fails_dtype_and_the_forward_follows(cast):
    x, y = image_batch(8)
    model = SmallCNN()
    if cast == "batch_float64":
        x = x.double()
    else:
        model = model.half()
    report = cvdoctor.check_model(model, (x, y), select=["model.dtype", "model.forward"])
    _pair(report, "model.dtype", "model.forward", "dtype-mismatch")


class _BatchStatsInEval(SmallCNN):
    """F.batch_norm with training=True in the root's own forward: eval outputs mix samples."""

    def forward(self, x):
        bn = self.features[1]
        f = F.batch_norm(self.features[0](x), None, None, bn.weight, bn.bias, training=True)
        f = self.features[3](self.features[2](f))
        f = self.features[7](self.features[6](self.features[5](self.features[4](f))))
        return self.head(torch.flatten(f, 1))


def test_batch_statistics_in_eval_fail_train_eval_and_batch_independence_follows():
    torch.manual_seed(0)
    report = cvdoctor.check_model(_BatchStatsInEval(), image_batch(8),
                                  select=["model.train_eval", "model.batch_independence"])
    _, bi = _pair(report, "model.train_eval", "model.batch_independence",
                  "eval-batch-dependent")
    assert bi.status == "warn"
    # the cause runs first, whatever order the checks were selected in
    assert report.check_ids().index("model.train_eval") < \
        report.check_ids().index("model.batch_independence")


def test_cli_text_and_json_for_the_off_by_one_example():
    target = str(EXAMPLES / "broken_off_by_one_labels.py")
    select = ["--select", "model.data,model.forward,model.output"]
    text = CliRunner().invoke(cli, ["model", target, *select])
    assert text.exit_code == 1, text.output
    assert "follows from model.data" in text.output
    assert "1 more follows from" in text.output, text.output
    # the consequence carries no second fix line
    assert text.output.count("fix:") == 1, text.output
    result = CliRunner().invoke(cli, ["model", target, *select, "--json"])
    assert result.exit_code == 1
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["model.forward"]["caused_by"] == "model.data"
    assert findings["model.forward"]["status"] == "fail"
    assert "caused_by" not in findings["model.data"]


def test_softmax_twice_fails_output_and_the_overfit_plateau_follows():
    """The overfit verdict keeps its own recipe (overfit-plateau) but names softmax-twice as
    what explains it, so it reads under model.output."""
    result = CliRunner().invoke(cli, ["model", str(EXAMPLES / "broken_softmax_twice.py"),
                                      "--select", "model.output,model.overfit_batch", "--json"])
    assert result.exit_code == 1, result.output
    found = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert found["model.output"]["recipe"] == "softmax-twice"
    assert "caused_by" not in found["model.output"]
    overfit = found["model.overfit_batch"]
    assert overfit["status"] == "fail" and overfit["recipe"] == "overfit-plateau"
    assert overfit["caused_by"] == "model.output"
    alone = CliRunner().invoke(cli, ["model", str(EXAMPLES / "broken_softmax_twice.py"),
                                     "--select", "model.overfit_batch", "--json"])
    (only,) = json.loads(alone.stdout)["findings"]
    assert "caused_by" not in only  # without its cause in the report it stands on its own
