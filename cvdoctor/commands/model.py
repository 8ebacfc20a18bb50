"""`cvdoctor model`: a model before training."""
from cvdoctor.commands import Command, Option, Param, Target

COMMAND = Command(
    name="model",
    summary="check a model before training: loss at init, gradients, overfit...",
    help="""Check a model before training: data, dtypes, forward, outputs, loss at init,
gradients, optimizer, batch independence, train/eval, and overfitting one batch.

\\b
TARGET is one of:
  path/to/train.py            a file with build_model()/model, get_batch()/train_loader,
                              loss_fn/criterion or training_step, build_optimizer/optimizer
  package.module:attr         the same, from an importable module (attr: the model)
  torchvision:resnet18        a zoo model with random weights and its own input size
  timm:vit_tiny_patch16_224
  ultralytics:yolov8n.yaml    a YOLO model yaml (random weights) or weights (yolov8n.pt, a
  path/to/best.pt             path), trained one step on --data; or a file that builds YOLO()
  segment_anything:vit_b      a SAM model type (vit_b, vit_l, vit_h) with --checkpoint FILE; or
                              a file that sets up SAM (sam_model_registry, SamPredictor)""",
    context="cvdoctor.model.context:context_for_target",
    target=Target("TARGET", "a model file, package.module:attr or a zoo spec"),
    options=(
        Option("input_shape", "Input size for a synthesized batch (e.g. 3,32,32); also sizes zoo "
               "models.", metavar="C,H,W", plugin=True,
               convert="cvdoctor.model.loader:parse_input_shape"),
        Option("num_classes", "Number of classes in your data (head size for zoo models).",
               kind="int", min=1, metavar="N", plugin=True),
        Option("batch_size", "Samples per batch: size of a synthesized batch, or keep the first "
               "B of yours; YOLO: the training batch.", kind="int", min=1, metavar="B",
               api=False),
        Option("device", "Where to run the checks (default: where the model's parameters are).",
               kind="choice", choices=("cpu", "cuda")),
        Option("budget", "Time cap for the slow checks (overfitting one batch).", kind="float",
               min=0, min_open=True, metavar="SECONDS", plugin=True),
        Option("model_name", "Attribute or factory in the file that gives the model (default: "
               "build_model, get_model, create_model, model).", flag="--model", metavar="NAME",
               api=False),
        Option("frozen", "Parameters that must not move in training, by name or glob "
               "(backbone.*); repeatable or comma-separated (default: the file's frozen = [...]).",
               multiple=True, metavar="NAMES", plugin=True,
               convert="cvdoctor.model.frozen:parse_frozen"),
        Option("amp", "Check mixed precision: the autocast dtype training uses (default: the "
               "file's amp = ... / autocast_dtype = ...).", kind="choice",
               choices=("bfloat16", "float16"), metavar="DTYPE", plugin=True),
        Option("grad_scaler", "Whether training uses a GradScaler with --amp (default: the "
               "file's grad_scaler = True/False).", kind="choice", choices=("yes", "no"),
               convert="cvdoctor.model.amp:parse_grad_scaler"),
        Option("data", "YOLO: the data.yaml to train on (default: the file's data=).",
               kind="path", metavar="DATA.yaml", api=False, plugin=True),
        Option("imgsz", "YOLO: training image size (default: the file's, the checkpoint's, 640).",
               kind="int", min=1, metavar="PX", api=False),
        Option("workers", "YOLO: DataLoader workers (default: the file's, 8).", kind="int", min=0,
               metavar="N", api=False),
        Option("checkpoint", "A checkpoint the model is meant to load: checked to be whole, safe "
               "and fitting the model (SAM: the weights for segment_anything:vit_b|vit_l|vit_h; "
               "default: the file's checkpoint = / weights =).", kind="path", metavar="FILE", api=False,
               plugin=True),
        Option("deep", "Run the full-size parts too: SAM's real image encoder at 1024 px, "
               "16 YOLO images instead of 4.", kind="bool", default=False, api=False),
        Option("ddp", "Also check data-parallel training: run N processes in a real "
               "torch.distributed group, each wrapping the model in DistributedDataParallel "
               "(default: the file's ddp = N; off).", kind="int", min=1, metavar="N",
               plugin=True),
        Option("ddp_timeout", "Seconds any DDP collective, or a rank without progress, may take "
               "before it counts as hung (default 60).", kind="float", min=0, min_open=True,
               metavar="SECONDS"),
    ),
    api_params=(
        Param("model", "the nn.Module to check (never modified)", required=True, positional=True),
        Param("batch", "one batch (inputs, targets); synthesized from input_shape when None",
              positional=True),
        Param("loss_fn", "the loss (default CrossEntropyLoss)"),
        Param("optimizer", "the optimizer instance you train with"),
        Param("training_step", "(model, (inputs, targets)) -> scalar loss, instead of loss_fn"),
        Param("optimizer_factory", "params -> optimizer, instead of an instance"),
        Param("name", "how the report names the model (default: its class name)"),
    ),
    api_context="cvdoctor.model.context:context_for_objects",
    api_doc="""Run the model checks on `model` with one `batch` = (inputs, targets).

Nothing passed in is modified: every pass and every training step runs on copies, and the
global RNG states are restored. Without a batch, one is synthesized from `input_shape`
(C, H, W) and `num_classes`: normalized random images and balanced labels.""",
    plugin_items=True,
)
