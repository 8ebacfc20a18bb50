"""model.optimizer: coverage by identity, stale parameters, parameters that do not move."""
from __future__ import annotations

import torch
from torch import nn

import cvdoctor
from broken_models_grad import SigmoidChain, head_replaced_after_optimizer
from modelzoo import frozen_backbone_resnet18
from modelzoo import SmallCNN, image_batch

CHECK = "model.optimizer"


def run(model, **kw):
    findings = cvdoctor.check_model(model, image_batch(8), select=[CHECK], **kw).get_all(CHECK)
    assert len(findings) == 1, [f.message for f in findings]
    return findings[0]


def test_no_optimizer_checks_the_default_and_says_so():
    f = run(SmallCNN())
    assert f.status == "pass" and "default Adam" in f.message


def test_given_optimizer_covering_everything_passes():
    model = SmallCNN()
    f = run(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert f.status == "pass" and "given SGD" in f.message


def test_factory_optimizer_passes():
    f = run(SmallCNN(), optimizer_factory=lambda ps: torch.optim.AdamW(ps, lr=1e-3))
    assert f.status == "pass" and "factory" in f.message


def test_frozen_backbone_with_head_only_optimizer_passes():
    model = frozen_backbone_resnet18()
    f = run(model, optimizer=torch.optim.Adam(model.fc.parameters(), lr=1e-3))
    assert f.status == "pass", f.message


def test_closure_optimizer_passes():
    model = SmallCNN()
    assert run(model, optimizer=torch.optim.LBFGS(model.parameters())).status == "pass"


def test_learnable_loss_parameters_are_not_stale():
    class WeightedCE(nn.Module):
        def __init__(self):
            super().__init__()
            self.log_temp = nn.Parameter(torch.zeros(()))

        def forward(self, out, y):
            return nn.functional.cross_entropy(out * self.log_temp.exp(), y)

    model, loss = SmallCNN(), WeightedCE()
    opt = torch.optim.Adam(list(model.parameters()) + list(loss.parameters()))
    assert run(model, optimizer=opt, loss_fn=loss).status == "pass"


def test_head_replaced_after_optimizer_fails_naming_the_head():
    model, opt = head_replaced_after_optimizer()
    f = run(model, optimizer=opt)
    assert (f.status, f.recipe) == ("fail", "optimizer-missing-params")
    assert "`head`" in f.message and "330 of 5,514" in f.message
    assert "replaced after the optimizer was built" in f.message
    assert f.evidence["stale_parameters"] == 32 * 1000 + 1000


def test_optimizer_over_the_backbone_only_fails_without_guessing_a_replacement():
    model = SmallCNN()
    f = run(model, optimizer=torch.optim.Adam(model.features.parameters()))
    assert (f.status, f.recipe) == ("fail", "optimizer-missing-params")
    assert "`head`" in f.message and "replaced" not in f.message


def test_stale_parameters_alone_warn():
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(3))]})
    f = run(model, optimizer=opt)
    assert (f.status, f.recipe) == ("warn", "optimizer-stale-params")


def test_lr_zero_fails():
    model = SmallCNN()
    f = run(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0))
    assert (f.status, f.recipe) == ("fail", "params-not-updating")
    assert "lr=0" in f.message and "10 of 10" in f.message


def test_one_group_with_lr_zero_warns_and_names_the_group():
    model = SmallCNN()
    opt = torch.optim.SGD([{"params": model.features.parameters(), "lr": 0.0},
                           {"params": model.head.parameters()}], lr=0.1)
    f = run(model, optimizer=opt)
    assert (f.status, f.recipe) == ("warn", "params-not-updating")
    assert "param group 0 has lr=0" in f.message and "features.0.weight" in f.message


def test_updates_lost_to_float_precision_warn_with_the_reason():
    model = SigmoidChain()
    f = run(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    assert (f.status, f.recipe) == ("warn", "params-not-updating")
    assert "float precision" in f.message


def test_scheduler_warmup_from_zero_is_not_a_problem():
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: step / 10)  # lr is 0 at step 0
    f = run(model, optimizer=opt)
    assert f.status == "pass" and "warmup" in f.message


def test_users_model_and_optimizer_are_untouched():
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run(model, optimizer=opt)
    assert not opt.state  # no step was taken on the user's optimizer
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_a_trainable_backbone_left_out_of_the_optimizer_warns_not_fails():
    """The optimizer over the head only, the features not frozen: they run before everything
    the optimizer holds, so nothing is lost but the time spent on their gradients."""
    model = SmallCNN()
    f = run(model, optimizer=torch.optim.Adam(model.head.parameters()))
    assert (f.status, f.recipe) == ("warn", "optimizer-missing-params"), f.message
    assert "`features`" in f.message and "computed for nothing" in f.message
    assert f.evidence["upstream"] is True


def test_a_no_grad_backbone_outside_the_optimizer_passes_with_a_note():
    from broken_models_grad import NoGradBackbone
    model = NoGradBackbone()
    f = run(model, optimizer=torch.optim.Adam(model.head.parameters()))
    assert f.status == "pass" and "frozen in effect" in f.message, f.message
    assert all(n.startswith("backbone.") for n in f.evidence["outside_without_gradient"])


def test_a_vit_backbone_left_out_with_its_root_tokens_warns_like_a_cnn_backbone():
    """timm's ViT holds cls_token and pos_embed on the root module; with the optimizer over the
    head only they are part of the feature extractor left trainable, not a forgotten head."""
    import timm
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4)
    f = run(model, optimizer=torch.optim.Adam(model.head.parameters()))
    assert (f.status, f.recipe) == ("warn", "optimizer-missing-params"), f.message
    assert "cls_token" in f.evidence["parameters"] and f.evidence["upstream"] is True


def test_a_root_token_alone_left_out_still_fails():
    import timm
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4)
    held = [p for n, p in model.named_parameters() if n != "cls_token"]
    f = run(model, optimizer=torch.optim.Adam(held))
    assert (f.status, f.recipe) == ("fail", "optimizer-missing-params"), f.message
    assert "`cls_token`" in f.message


def test_a_forward_that_fails_does_not_hide_parameters_missing_from_the_optimizer():
    """Without a backward no gradient is known, so nothing outside the optimizer counts as
    frozen in effect: the replaced head is still reported."""
    model, opt = head_replaced_after_optimizer()

    def broken_loss(out, y):
        raise RuntimeError("the loss is broken")

    f = run(model, optimizer=opt, loss_fn=broken_loss)
    assert (f.status, f.recipe) == ("fail", "optimizer-missing-params"), f.message
