"""`cvdoctor ckpt`: checkpoint files, before anyone loads them."""
from cvdoctor.commands import Command, Option, Target

COMMAND = Command(
    name="ckpt",
    summary="check checkpoint files: what they are, safe to load, whole, fit the model",
    help="""Check checkpoint files without running them: what each file really is, whether
loading it would run code (every pickle torch or numpy could read, replayed symbolically), whether
it is whole (headers, sizes, hashes; CRCs under --deep), whether torch.load(weights_only=True)
takes it (in a subprocess), and, with --model, whether it fits the model and the exact lines that
load it. --fix OUT writes the repaired state dict to a new file and verifies it; the input is
never changed.

\\b
FILE is a .pt/.pth/.ckpt/.bin (torch.save, legacy or zip), .safetensors, .npy/.npz or a pickle.
TARGET is anything `cvdoctor model` accepts, plus segment_anything:vit_b|vit_l|vit_h:
  path/to/train.py            a file with build_model() or model
  package.module:attr         the model from an importable module
  torchvision:resnet18        zoo models (built on the meta device: shapes only)
  timm:vit_tiny_patch16_224
  segment_anything:vit_b""",
    context="cvdoctor.checkpoint.facts:ckpt_context",
    target=Target("FILE", "checkpoint files (.pt, .pth, .ckpt, .bin, .safetensors, .npy, .npz)",
                  many=True),
    options=(
        Option("model", "Check that the checkpoint fits this model (anything `cvdoctor model` "
               "accepts, or segment_anything:vit_b|vit_l|vit_h; an nn.Module in the Python API).",
               metavar="TARGET", plugin=True),
        Option("num_classes", "Head size of a zoo --model (torchvision/timm).", kind="int",
               min=1, metavar="N"),
        Option("deep", "Hash whole files (with the cache), check every zip member's CRC and "
               "load big files too.", kind="bool", default=False),
        Option("fix", "Write the repaired state dict (unwrapped, prefixes aligned) to OUT: "
               "safetensors when installed or OUT ends in .safetensors, torch.save for "
               ".pt/.pth; verified against --model. Never touches the input.", kind="path",
               metavar="OUT"),
        Option("force", "Let --fix replace an existing OUT.", kind="bool", default=False),
        Option("skip_head", "With --fix: leave out a head of another size (the model keeps its "
               "own), and verify that exactly the head is missing.", kind="bool",
               default=False),
    ),
    api_doc="""Check checkpoint FILE(s) without running them. `model` may be a TARGET string or
an nn.Module (never modified). With `fix=OUT`, write the repaired state dict there and verify it.""",
    plugin_items=True,
)
