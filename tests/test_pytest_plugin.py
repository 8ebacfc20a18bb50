"""The pytest plugin, tested the way users meet it: real pytest sessions of small test files.

Most runs are in-process (`pytester.runpytest`); the import-cost and xdist tests run in a
subprocess, where what is imported and what the workers do is real.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cvdoctor.factgraph import load_fact_modules  # noqa: E402
from cvdoctor.registry import all_checks  # noqa: E402
from pytest_cvdoctor.explain import one_line_fix  # noqa: E402
from pytest_cvdoctor.requirements import format_size, parse_size  # noqa: E402

all_checks()


def ordinary_model_checks() -> list:
    """The model checks an ordinary (classification) target gets as items: YOLO and SAM checks
    declare other targets, and opt-in checks (DDP, AMP, a named checkpoint) need their option."""
    return [s for s in all_checks("model") if not s.targets and not s.opt_in_names]


# Checks with nothing to look at on a plain model: they skip, saying so.
NOTHING_TO_CHECK = ("model.gradcheck", "model.frozen")


load_fact_modules(["cvdoctor.facts", "cvdoctor.model.facts"])


@pytest.fixture(autouse=True)
def _keep_library_modules_between_inline_runs(monkeypatch, tmp_path_factory):
    """pytester drops every module an in-process run imported when the run ends. Re-importing a
    torch submodule in the same process aborts it (C++ registrations happen twice), and
    re-importing a check module registers its id twice. Keep everything that is not one of the
    generated test files; those still come and go as pytester intends."""
    from _pytest import pytester as pytester_module

    base = str(tmp_path_factory.getbasetemp())
    original = pytester_module.SysModulesSnapshot

    class KeepLibraries(original):
        def __init__(self, preserve=None):
            def keep(name):
                file = getattr(sys.modules.get(name), "__file__", None) or ""
                return not file.startswith(base) or bool(preserve and preserve(name))
            super().__init__(preserve=keep)

    monkeypatch.setattr(pytester_module, "SysModulesSnapshot", KeepLibraries)

TINY = '''
import torch
from torch import nn


def tiny_cnn(num_classes=10):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, num_classes))


def image_batch(n=8, num_classes=10):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % num_classes
'''

# A model file for zero-code mode: a linear head on 8x8 pixels memorizes 8 images in a few steps.
MODEL_FILE = '''
import torch
from torch import nn

input_shape = (3, 8, 8)
num_classes = 4


def build_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 4))


def build_optimizer(params):
    return torch.optim.Adam(params, lr=1e-2)
'''

OFF_BY_ONE_FILE = MODEL_FILE + '''

def get_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 8, 8, generator=g), torch.tensor([1, 2, 3, 4, 1, 2, 3, 4])
'''

SECTION = re.compile(r"^-+ cvdoctor -+$", re.M)


def outcomes(result) -> dict[str, int]:
    return result.parseoutcomes()


def test_size_parser_reads_the_units_people_write():
    assert parse_size("1GiB") == 2**30
    assert parse_size("1G") == 2**30  # as Docker's --shm-size reads it
    assert parse_size("1GB") == 10**9
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("1.5 GiB") == int(1.5 * 2**30)
    assert parse_size(4096) == 4096
    assert format_size(64 * 2**20) == "64.0 MiB"
    for bad in ("lots", "1 parsec", "", "-1G", True):
        with pytest.raises(ValueError):
            parse_size(bad)


# --- loading, turning off, names ----------------------------------------------------------------
def test_loading_the_plugin_imports_neither_torch_nor_the_api(pytester):
    """The plugin loads in every pytest run of every project that installs cvdoctor."""
    pytester.makeconftest('''
        import sys

        HEAVY = ("torch", "torchvision", "numpy", "click", "cvdoctor.api", "cvdoctor.catalog",
                 "cvdoctor.registry")

        def pytest_unconfigure(config):
            loaded = config.pluginmanager.has_plugin("cvdoctor")
            heavy = sorted(m for m in HEAVY if m in sys.modules)
            with open("modules.txt", "w") as f:
                f.write(f"loaded={loaded} heavy={heavy}")
    ''')
    pytester.makepyfile(test_plain='''
        import pytest
        from pytest_cvdoctor import assert_gradients_flow, assert_overfits_one_batch

        def test_passes():
            assert callable(assert_gradients_flow) and callable(assert_overfits_one_batch)

        @pytest.mark.parametrize("x", [1, 2])
        def test_more(x):
            assert x
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    # A passing run pays nothing: not even the recipe catalog is read.
    assert (pytester.path / "modules.txt").read_text() == "loaded=True heavy=[]"


def test_p_no_cvdoctor_turns_the_plugin_off(pytester):
    pytester.makepyfile('''
        def test_uses_fixture(cvdoctor):
            pass
    ''')
    result = pytester.runpytest("-p", "no:cvdoctor")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'cvdoctor' not found*"])
    result = pytester.runpytest("-p", "no:cvdoctor", "--cvdoctor-env")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --cvdoctor-env*"])


def test_fixture_names_stay_in_the_cvdoctor_namespace(pytester):
    """No generic names (device, model, torch) that pytest-torch or the user's conftest own."""
    pytester.makeconftest('''
        import pytest

        @pytest.fixture
        def device():
            return "cpu"

        @pytest.fixture
        def model():
            return "user's model"
    ''')
    pytester.makepyfile('''
        def test_users_fixtures_win(device, model, cvdoctor):
            assert (device, model) == ("cpu", "user's model")
            assert hasattr(cvdoctor, "check_model")
    ''')
    pytester.runpytest().assert_outcomes(passed=1)
    listing = pytester.runpytest("--fixtures").stdout.str()
    block = listing.split("fixtures defined from pytest_cvdoctor.plugin", 1)[1]
    block = re.split(r"^-+ fixtures defined from", block, maxsplit=1, flags=re.M)[0]
    names = set(re.findall(r"^(\w+)(?: \[session scope\])? -- ", block, re.M))
    assert names == {"cvdoctor", "cvdoctor_env"}


# --- fixtures and helpers -------------------------------------------------------------------
def test_cvdoctor_fixture_passes_a_healthy_model(pytester):
    pytester.makepyfile(tinymodels=TINY)
    pytester.makepyfile(test_healthy='''
        import torch
        from tinymodels import image_batch, tiny_cnn

        def test_healthy(cvdoctor):
            model = tiny_cnn()
            report = cvdoctor.check_model(
                model, image_batch(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                select=["model.forward", "model.gradients", "model.optimizer"])
            assert report.check_ids() == ["model.forward", "model.gradients", "model.optimizer"]
            cvdoctor.assert_healthy(report)
            assert report.ok
    ''')
    pytester.runpytest().assert_outcomes(passed=1)


def test_cvdoctor_fixture_fails_a_head_swapped_after_the_optimizer(pytester):
    pytester.makepyfile(tinymodels=TINY)
    pytester.makepyfile(test_broken='''
        import torch
        from torch import nn
        from tinymodels import image_batch, tiny_cnn

        def test_head_replaced_after_optimizer(cvdoctor):
            model = tiny_cnn()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            model[-1] = nn.Linear(8, 10)  # new parameters the optimizer never sees
            report = cvdoctor.check_model(model, image_batch(), optimizer=optimizer,
                                          select=["model.optimizer"])
            cvdoctor.assert_healthy(report)
    ''')
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*cvdoctor model*: 1 of 1 check(s) failed",
        "*✗ model.optimizer: *",
        "*  fix: *",
        "*  more: cvdoctor explain optimizer-missing-params",
    ])
    # The message says what was measured: the parameters left out, by name.
    assert re.search(r"model\.optimizer: .*(4|weight|bias)", result.stdout.str())
    # cvdoctor's own message names its recipe: no second explanation section under it.
    assert not SECTION.search(result.stdout.str())


def test_assertion_helpers_pass_healthy_and_fail_broken_models(pytester):
    pytester.makepyfile(tinymodels=TINY)
    pytester.makepyfile(test_helpers='''
        import torch
        from torch import nn
        from pytest_cvdoctor import (assert_batch_independent, assert_gradients_flow,
                                     assert_initial_loss_ok, assert_optimizer_covers_model)
        from tinymodels import image_batch, tiny_cnn

        def test_healthy_gradients():
            finding = assert_gradients_flow(tiny_cnn(), image_batch())
            assert finding.check == "model.gradients" and finding.status == "pass"

        def test_healthy_initial_loss():
            assert assert_initial_loss_ok(tiny_cnn(), image_batch()).status == "pass"

        def test_healthy_batch_independence():
            assert assert_batch_independent(tiny_cnn(), image_batch()).status == "pass"

        class Mixer(nn.Module):
            """Flattens the batch dimension away: sample i sees sample j."""
            def __init__(self):
                super().__init__()
                self.net = tiny_cnn()
            def forward(self, x):
                out = self.net(x)
                return out + out.mean(0, keepdim=True)

        def test_mixing_samples_fails():
            assert_batch_independent(Mixer(), image_batch())

        def test_optimizer_missing_the_head_fails():
            model = tiny_cnn()
            optimizer = torch.optim.Adam(model.parameters())
            model[-1] = nn.Linear(8, 10)
            assert_optimizer_covers_model(model, image_batch(), optimizer=optimizer)
    ''')
    result = pytester.runpytest("-rfs")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines([
        "FAILED test_helpers.py::test_mixing_samples_fails - Assert*",
        "FAILED test_helpers.py::test_optimizer_missing_the_head_fails - Assert*",
    ])
    out = result.stdout.str()
    assert "✗ model.batch_independence: " in out
    assert "✗ model.optimizer: " in out
    assert out.count("more: cvdoctor explain ") >= 2


def test_overfit_helper_on_a_learnable_batch(pytester):
    pytester.makepyfile(test_overfit='''
        import torch
        from torch import nn
        from pytest_cvdoctor import assert_overfits_one_batch

        def test_memorizes():
            model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(),
                                  nn.Linear(32, 4))
            g = torch.Generator().manual_seed(0)
            batch = torch.randn(8, 3, 8, 8, generator=g), torch.arange(8) % 4
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            finding = assert_overfits_one_batch(model, batch, optimizer=optimizer,
                                                strict=True)
            assert finding.status == "pass"
    ''')
    pytester.runpytest("--cvdoctor-budget", "60").assert_outcomes(passed=1)


def test_env_fixture_is_one_lazy_session_report(pytester):
    pytester.makepyfile('''
        seen = []

        def test_first(cvdoctor_env):
            seen.append(cvdoctor_env)
            assert cvdoctor_env.command == "env"
            assert cvdoctor_env["env.platform"].status == "pass"

        def test_second(cvdoctor_env, cvdoctor):
            assert cvdoctor_env is seen[0]            # computed once per session
            assert cvdoctor.check_env() is cvdoctor_env
            assert cvdoctor.env is cvdoctor_env
    ''')
    pytester.runpytest().assert_outcomes(passed=2)


# --- the cvdoctor_requires marker ------------------------------------------------------------
REQUIRES = '''
    import pytest

    @pytest.mark.cvdoctor_requires(min_shm="64TiB")
    def test_needs_a_huge_shm():
        pass

    @pytest.mark.cvdoctor_requires(packages=["timm"])
    def test_needs_timm():
        pass

    @pytest.mark.cvdoctor_requires(checkpoints=["weights/sam_vit_b_01ec64.pth"])
    def test_needs_a_checkpoint():
        pass

    @pytest.mark.cvdoctor_requires(min_shm="1KiB", packages=["pytest"],
                                   checkpoints=["weights/present.pth"])
    def test_everything_there():
        pass
'''

# timm is installed here; hide it the way a fresh environment lacks it (find_spec sees nothing).
HIDE_TIMM = '''
    import sys

    class _HideTimm:
        def find_spec(self, name, path=None, target=None):
            if name == "timm" or name.startswith("timm."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _HideTimm())
'''


def _requires_project(pytester) -> None:
    pytester.makeconftest(HIDE_TIMM)
    pytester.makepyfile(test_requires=REQUIRES)
    (pytester.path / "weights").mkdir()
    torch.save({"fc.weight": torch.zeros(2, 3)}, pytester.path / "weights" / "present.pth")


def test_requires_marker_skips_with_the_measured_reason_and_recipe(pytester):
    _requires_project(pytester)
    # A subprocess: in this process timm may already be imported, and find_spec then answers
    # from sys.modules without asking the conftest's hiding finder.
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=1, skipped=3)
    shm = os.statvfs("/dev/shm")
    size = format_size(shm.f_blocks * shm.f_frsize)
    result.stdout.fnmatch_lines_random([
        f"SKIPPED [[]1[]] test_requires.py:3: cvdoctor_requires: needs 64.0 TiB of shared memory, "
        f"/dev/shm is {size} (*free) (cvdoctor explain shm-docker-ipc)",
        "SKIPPED [[]1[]] test_requires.py:7: cvdoctor_requires: needs the package 'timm', which is "
        "not importable here (pip install timm) (cvdoctor explain missing-timm)",
        "SKIPPED [[]1[]] test_requires.py:11: cvdoctor_requires: needs the checkpoint "
        "*weights/sam_vit_b_01ec64.pth, which does not exist*",
    ])


def test_requires_marker_judges_a_checkpoint_by_its_integrity_facts(pytester):
    """A file that exists is not enough: a truncated download or an unsafe pickle is unmet,
    read statically (nothing is loaded)."""
    (pytester.path / "weights").mkdir()
    good = pytester.path / "weights" / "good.pth"
    torch.save({"fc.weight": torch.zeros(2, 3)}, good)
    data = good.read_bytes()
    (pytester.path / "weights" / "cut.pth").write_bytes(data[: len(data) // 2])
    (pytester.path / "weights" / "empty.pth").write_bytes(b"")
    pytester.makepyfile(test_ckpt='''
        import pytest

        @pytest.mark.cvdoctor_requires(checkpoints=["weights/good.pth"])
        def test_good():
            pass

        @pytest.mark.cvdoctor_requires(checkpoints=["weights/cut.pth"])
        def test_cut():
            pass

        @pytest.mark.cvdoctor_requires(checkpoints=["weights/empty.pth"])
        def test_empty():
            pass
    ''')
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    out = result.stdout.str()
    assert "weights/cut.pth, which" in out and "cvdoctor explain checkpoint-truncated" in out
    assert "weights/empty.pth, which" in out and "empty" in out


def test_requires_marker_fails_under_strict(pytester):
    _requires_project(pytester)
    result = pytester.runpytest_subprocess("--cvdoctor-strict", "-k", "timm or everything")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_needs_timm*",
        "cvdoctor_requires: needs the package 'timm'*(cvdoctor explain missing-timm) "
        "[[]--cvdoctor-strict[]]",
    ])
    pytester.makeini("[pytest]\ncvdoctor_strict = true\n")
    pytester.runpytest_subprocess("-k", "shm").assert_outcomes(errors=1, deselected=3)


def test_requires_gpu_says_why_there_is_none(pytester):
    pytester.makepyfile('''
        import pytest

        @pytest.mark.cvdoctor_requires(gpu=True)
        def test_on_gpu():
            import torch
            assert torch.cuda.is_available()
    ''')
    result = pytester.runpytest("-rs")
    if any(Path("/dev").glob("nvidia[0-9]*")):
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*cvdoctor_requires: needs a usable GPU: no NVIDIA GPU "
                                     "visible*(cvdoctor explain no-gpu)"])


def test_requires_marker_rejects_unknown_requirements(pytester):
    pytester.makepyfile('''
        import pytest

        @pytest.mark.cvdoctor_requires(gpus=2)
        def test_typo():
            pass
    ''')
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown requirement(s) gpus (known: gpu, min_shm, packages, "
                                 "checkpoints)*"])


# --- report header ----------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["option", "ini"])
def test_env_summary_in_the_report_header(pytester, how):
    pytester.makepyfile("def test_ok():\n    pass\n")
    if how == "ini":
        pytester.makeini("[pytest]\ncvdoctor_env = true\n")
        result = pytester.runpytest()
    else:
        result = pytester.runpytest("--cvdoctor-env")
    result.assert_outcomes(passed=1)
    header = result.stdout.str().split("collected", 1)[0]
    assert re.search(r"^cvdoctor env: \d+ checks", header, re.M)
    for check in ("env.platform", "env.torch", "env.cuda", "env.shm"):
        assert re.search(rf"^  [✓!✗–E] {re.escape(check)} +\S", header, re.M), check
    # No GPU here: the warning line carries its recipe.
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        assert re.search(r"^  ! env\.cuda .*\[cvdoctor explain no-gpu\]$", header, re.M)
    assert max(len(line) for line in header.splitlines()) <= 120


def test_no_env_summary_unless_asked(pytester):
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "cvdoctor env:" not in result.stdout.str()


# --- failure explanations ---------------------------------------------------------------------
REAL_ERRORS = '''
    import pytest
    import torch
    from torch import nn

    def test_float64_batch_into_float32_conv():
        conv = nn.Conv2d(3, 8, 3)
        images = torch.rand(2, 3, 16, 16, dtype=torch.float64)   # e.g. from numpy
        conv(images)

    def test_label_equal_to_num_classes():
        logits = torch.randn(4, 10)
        nn.CrossEntropyLoss()(logits, torch.tensor([0, 3, 9, 10]))

    def test_unrelated_failure():
        {}["lr"]

    @pytest.fixture
    def broken_batch():
        return nn.Linear(4, 2)(torch.ones(1, 4, dtype=torch.float64))

    def test_setup_fails(broken_batch):
        pass

    def test_passes():
        pass
'''


def _sections(output: str) -> dict[str, str]:
    """Failure header (test name) -> text of its cvdoctor section."""
    found = {}
    parts = re.split(r"^_{3,} (?:ERROR at setup of )?(\w+) _{3,}$", output, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2]):
        m = SECTION.search(body)
        if m:
            found[name] = body[m.end():].split("\n=", 1)[0]
    return found


def test_real_dtype_and_target_errors_get_a_cvdoctor_section(pytester):
    pytester.makepyfile(test_errors=REAL_ERRORS)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=3, errors=1)
    sections = _sections(result.stdout.str())
    assert set(sections) == {"test_float64_batch_into_float32_conv",
                             "test_label_equal_to_num_classes", "test_setup_fails"}
    dtype = sections["test_float64_batch_into_float32_conv"]
    assert "matched: RuntimeError: Input type (double) and bias type (float) should be " \
           "the same" in dtype
    assert re.search(r"^  fix: +\S.+", dtype, re.M)
    assert "more:    cvdoctor explain dtype-mismatch" in dtype
    target = sections["test_label_equal_to_num_classes"]
    assert "matched: IndexError: Target 10 is out of bounds." in target
    assert "more:    cvdoctor explain target-out-of-bounds" in target
    assert "cvdoctor explain dtype-mismatch" in sections["test_setup_fails"]
    from cvdoctor.catalog import get_recipe

    assert get_recipe("target-out-of-bounds").title in target


@pytest.mark.parametrize("how", ["option", "ini"])
def test_explanations_can_be_turned_off(pytester, how):
    pytester.makepyfile(test_errors=REAL_ERRORS)
    if how == "ini":
        pytester.makeini("[pytest]\ncvdoctor_explain = false\n")
        result = pytester.runpytest()
    else:
        result = pytester.runpytest("--no-cvdoctor-explain")
    result.assert_outcomes(passed=1, failed=3, errors=1)
    assert "Input type (double)" in result.stdout.str()
    assert not SECTION.search(result.stdout.str())


def test_one_line_fix_is_the_point_of_the_recipe():
    from cvdoctor.catalog import load_catalog

    for recipe in load_catalog().values():
        fix = one_line_fix(recipe)
        assert fix and "\n" not in fix and len(fix) <= 240, recipe.id


# --- zero-code mode -----------------------------------------------------------------------------
def test_model_option_adds_one_item_per_check(pytester):
    pytester.makepyfile(my_model=MODEL_FILE)
    pytester.makepyfile("def test_users_own():\n    pass\n")
    result = pytester.runpytest("-v", "--cvdoctor-model", "my_model.py",
                                "--cvdoctor-budget", "60")
    # The checks for ordinary model targets (YOLO and SAM checks declare other targets).
    model_ids = [s.id for s in ordinary_model_checks()]
    result.assert_outcomes(passed=1 + len(model_ids) - len(NOTHING_TO_CHECK),
                           skipped=len(NOTHING_TO_CHECK))
    result.stdout.fnmatch_lines_random(
        [f"cvdoctor-model:my_model.py::{check} "
         f"{'SKIPPED' if check in NOTHING_TO_CHECK else 'PASSED'}*" for check in model_ids])
    assert "model.overfit_batch" in model_ids and "model.gradients" in model_ids


def test_model_items_fail_with_the_measured_message_and_recipe(pytester):
    pytester.makepyfile(off_by_one=OFF_BY_ONE_FILE)
    result = pytester.runpytest("-k", "data or forward", "--cvdoctor-model", "off_by_one.py")
    result.assert_outcomes(failed=2, deselected=len(ordinary_model_checks()) - 2)
    result.stdout.fnmatch_lines_random([
        "cvdoctor model.data on off_by_one.py:",
        "✗ model.data: *labels*",
        "  more: cvdoctor explain target-out-of-bounds",
        "FAILED cvdoctor-model:off_by_one.py::model.data - *",
        "FAILED cvdoctor-model:off_by_one.py::model.forward - *",
    ])
    assert "Traceback" not in result.stdout.str()


def test_model_item_outcomes_follow_finding_status(pytester):
    """warn passes with a CvdoctorWarning (fails under --cvdoctor-strict); skip skips."""
    # `model` (no factory: build_model() would win) handed over in eval mode: train_eval warns.
    pytester.makepyfile(handed_in_eval=MODEL_FILE.replace("def build_model", "def _build") + '''

model = _build().eval()
''')
    pytester.makepyfile(custom_loss=MODEL_FILE + '''

def loss_fn(outputs, targets):   # no known expectation at init: model.initial_loss skips
    return (outputs.logsumexp(1) - outputs.gather(1, targets[:, None])[:, 0]).mean() * 3
''')
    result = pytester.runpytest("-v", "-rs", "-k", "train_eval or initial_loss",
                                "--cvdoctor-model", "handed_in_eval.py",
                                "--cvdoctor-model", "custom_loss.py")
    result.assert_outcomes(passed=3, skipped=1, deselected=2 * len(ordinary_model_checks()) - 4)
    result.stdout.fnmatch_lines_random([
        "cvdoctor-model:handed_in_eval.py::model.train_eval PASSED*",
        "cvdoctor-model:custom_loss.py::model.initial_loss SKIPPED*",
        "*CvdoctorWarning: ! model.train_eval: *",
        "SKIPPED [[]1[]] custom_loss.py: cvdoctor model.initial_loss: *",
    ])
    strict = pytester.runpytest("--cvdoctor-strict", "-k", "train_eval",
                                "--cvdoctor-model", "handed_in_eval.py")
    strict.assert_outcomes(failed=1, deselected=len(ordinary_model_checks()) - 1)
    strict.stdout.fnmatch_lines(["! model.train_eval: *", "  more: cvdoctor explain *"])


def test_model_target_that_does_not_load_fails_every_item_clearly(pytester):
    pytester.makeini("[pytest]\ncvdoctor_model = missing_model.py\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=len(all_checks("model")))
    result.stdout.fnmatch_lines([
        "cvdoctor could not load the model target 'missing_model.py':",
        "  TargetError: *missing_model.py: no such file",
    ])


def test_zoo_spec_target(pytester):
    pytest.importorskip("torchvision")
    result = pytester.runpytest("-v", "-k", "forward or gradients",
                                "--cvdoctor-model", "torchvision:resnet18",
                                "--cvdoctor-input-shape", "3,32,32",
                                "--cvdoctor-num-classes", "10")
    result.assert_outcomes(passed=2, deselected=len(ordinary_model_checks()) - 2)
    result.stdout.fnmatch_lines_random([
        "cvdoctor-model:torchvision:resnet18::model.forward PASSED*",
        "cvdoctor-model:torchvision:resnet18::model.gradients PASSED*",
    ])


def test_bad_budget_is_a_usage_error(pytester):
    result = pytester.runpytest("--cvdoctor-budget", "soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cvdoctor-budget / cvdoctor_budget: 'soon' is not a number*"])


# --- pytest-xdist ---------------------------------------------------------------------------
@pytest.mark.slow
def test_header_and_explanations_under_xdist(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_errors=REAL_ERRORS)
    pytester.makepyfile(test_more='''
        def test_a():
            pass

        def test_b():
            pass
    ''')
    pytester.makepyfile(off_by_one=OFF_BY_ONE_FILE)
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", "--cvdoctor-env",
                                           "-p", "no:cacheprovider",
                                           "--cvdoctor-model", "off_by_one.py",
                                           "-k", "not model or model.data")
    result.assert_outcomes(passed=3, failed=4, errors=1)
    out = result.stdout.str()
    assert "FAILED cvdoctor-model:off_by_one.py::model.data - " in out
    assert "created: 2/2 workers" in out
    assert len(re.findall(r"^cvdoctor env: \d+ checks", out, re.M)) == 1
    assert "more:    cvdoctor explain dtype-mismatch" in out
    assert "more:    cvdoctor explain target-out-of-bounds" in out
    assert len(SECTION.findall(out)) == 3


# --- the shipped example --------------------------------------------------------------------
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tests"


@pytest.mark.slow
def test_the_example_suite_passes_and_runs_zero_code(pytester):
    for name in ("my_model.py", "test_my_model.py"):
        (pytester.path / name).write_text((EXAMPLE / name).read_text())
    # The example's overfit test trains for seconds; assert_overfits_one_batch has its own test.
    result = pytester.runpytest("-rs", "-k", "not memorizes")
    outcome = outcomes(result)
    assert outcome.get("failed", 0) == 0 and outcome.get("errors", 0) == 0
    assert outcome["passed"] >= 6
    zero_code = pytester.runpytest("-v", "--cvdoctor-model", "my_model.py",
                                   "-m", "cvdoctor_model", "-k", "not overfit_batch")
    zero_code.assert_outcomes(passed=len(ordinary_model_checks()) - 1 - len(NOTHING_TO_CHECK),
                              skipped=len(NOTHING_TO_CHECK))
