"""`cvdoctor env`: the machine."""
from cvdoctor.commands import Command, Option

COMMAND = Command(
    name="env",
    summary="check this machine: torch build, GPU, shared memory, packages, checkpoints...",
    help="Check the environment: platform, torch build, CUDA and GPU arch, shared memory, "
         "packages, checkpoints, resources.",
    context="cvdoctor.facts:env_context",
    options=(
        Option("deep", "Run slow probes too (DataLoader workers on shared memory, full checkpoint "
               "hashes, importing every optional package).", kind="bool", default=False),
        Option("require_gpu", "No usable GPU is a failure, not a warning.", kind="bool",
               default=False),
        Option("checkpoint_dirs", "Also look for checkpoints here (repeatable).", kind="path",
               flag="--checkpoints", metavar="DIR", multiple=True, default=(), exists=True),
    ),
    api_doc="Run the `env` checks. `recorded` replaces gathered facts by name (tests, replays).",
)
