"""A tiny SAM built from segment-anything's own modules: the same predictor code (resizing,
normalization, prompt encoding, mask decoding, postprocessing), small enough that the image and
prompt checks run in milliseconds on a CPU. Random weights: it tests the contract (what raises,
what is silently converted), never mask quality.
"""
from __future__ import annotations

from functools import partial

TINY_IMAGE = 64  # the encoder's input side (the real ones use 1024)
TINY_EMBED = 32


def tiny_sam(seed: int = 0, image_size: int = TINY_IMAGE, embed_dim: int = TINY_EMBED):
    import torch
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    emb = image_size // 16
    prompt_dim = embed_dim
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(
                depth=2, embed_dim=embed_dim, img_size=image_size, mlp_ratio=2,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=16,
                qkv_bias=True, use_rel_pos=True, global_attn_indexes=[1], window_size=2,
                out_chans=prompt_dim),
            prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(emb, emb),
                                         input_image_size=(image_size, image_size),
                                         mask_in_chans=4),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=1, embedding_dim=prompt_dim, mlp_dim=32,
                                              num_heads=2),
                transformer_dim=prompt_dim, iou_head_depth=2, iou_head_hidden_dim=16),
            pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return sam.eval()


def mask_input_side(sam) -> int:
    """The side of the low-resolution mask `predict(mask_input=...)` takes (256 for real SAM)."""
    return 4 * sam.prompt_encoder.image_embedding_size[0]
