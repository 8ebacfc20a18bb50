"""SAM set-ups for the model.sam_* tests: files that set SAM up the way the guide does (on a tiny
SAM built from segment-anything's modules, so they import in milliseconds), and checkpoints with
the exact key names and shapes of a real vit_b/vit_l/vit_h state dict but one random number per
tensor (each tensor is a 0-stride view of a scalar: torch saves one element per storage), so a
"vit_b checkpoint" is 100 KB."""
from __future__ import annotations

import textwrap
from pathlib import Path

SETUP_HEAD = """\
import numpy as np
from segment_anything import SamPredictor
from cvdoctor.sam.tiny import tiny_sam

sam = tiny_sam()
predictor = SamPredictor(sam)
"""

GOOD_IMAGE = """\
def get_image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
"""

GOOD_PROMPTS = """\
def get_prompts():
    return {"point_coords": np.array([[40, 20]]), "point_labels": np.array([1]),
            "multimask_output": True}
"""


def write_setup(path: Path, image: str | None = GOOD_IMAGE, prompts: str | None = GOOD_PROMPTS,
                head: str = SETUP_HEAD, extra: str = "") -> Path:
    parts = [head]
    for block in (image, prompts, extra):
        if block:
            parts.append(textwrap.dedent(block))
    path.write_text("\n\n".join(parts))
    return path


def shaped_checkpoint(path: Path, model_type: str, *, container: str | None = None,
                      prefix: str = "") -> Path:
    """A checkpoint with the key names and shapes of sam_model_registry[model_type]."""
    import torch
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        model = sam_model_registry[model_type]()
    g = torch.Generator().manual_seed(0)
    state = {prefix + k: torch.randn((), generator=g).expand(v.shape)
             for k, v in model.state_dict().items()}
    torch.save({container: state} if container else state, path)
    return path


FINETUNE = """\
import torch
import torch.nn.functional as F
from segment_anything import SamPredictor
from cvdoctor.sam.tiny import tiny_sam

sam = tiny_sam()
sam.train()
{freeze}
# this step trains the first mask token's output only (multimask_output=False)
sam.mask_decoder.iou_prediction_head.requires_grad_(False)
sam.mask_decoder.output_hypernetworks_mlps[1:].requires_grad_(False)
optimizer = torch.optim.Adam({params}, lr=1e-3)


def get_batch():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 64, 64, generator=g) * 255
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [16.0, 16.0, 56.0, 48.0]])
    masks = torch.zeros(2, 1, 64, 64)
    masks[0, :, 8:40, 8:40] = 1
    masks[1, :, 16:48, 16:56] = 1
    return (images, boxes), masks


def training_step(model, batch):
    (images, boxes), gt = batch
{encode}
    losses = []
    for emb, box, target in zip(embeddings, boxes, gt):
        sparse, dense = model.prompt_encoder(points=None, boxes=box[None], masks=None)
        low, _ = model.mask_decoder(image_embeddings=emb[None],
                                    image_pe=model.prompt_encoder.get_dense_pe(),
                                    sparse_prompt_embeddings=sparse,
                                    dense_prompt_embeddings=dense, multimask_output=False)
        pred = F.interpolate(low, size=target.shape[-2:], mode="bilinear", align_corners=False)
        losses.append(F.binary_cross_entropy_with_logits(pred[0], target))
    return torch.stack(losses).mean()
"""

ENCODE_NO_GRAD = """\
    with torch.no_grad():
        embeddings = model.image_encoder(model.preprocess(images))"""
ENCODE_WITH_GRAD = """\
    embeddings = model.image_encoder(model.preprocess(images))"""


def write_finetune(path: Path, freeze: str, params: str, encode: str) -> Path:
    path.write_text(FINETUNE.format(freeze=freeze, params=params, encode=encode))
    return path
