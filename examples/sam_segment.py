"""SAM set up the way the troubleshooting guide does it, checked by `cvdoctor model`:

    cvdoctor model examples/sam_segment.py
    cvdoctor model segment_anything:vit_b --checkpoint ~/checkpoints/sam_vit_b_01ec64.pth

The checkpoint must match model_type (cvdoctor reads its shapes without loading it). This file
loads `checkpoint` itself when it is imported, so point `checkpoint` at your file; --checkpoint
on the command line checks another file against model_type without importing this one. With
get_image() and get_prompts(), cvdoctor passes your image to SamPredictor.set_image and your
prompts to predict(), on a tiny SAM by default (--deep: the real encoder), and estimates the
encoder's memory against your GPU's.
"""
import cv2
import numpy as np
from segment_anything import SamPredictor, sam_model_registry

model_type = "vit_b"
checkpoint = "sam_vit_b_01ec64.pth"   # https://dl.fbaipublicfiles.com/segment_anything/

sam = sam_model_registry[model_type](checkpoint=checkpoint)
predictor = SamPredictor(sam)


def get_image():
    image = cv2.imread("photo.jpg")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)        # OpenCV reads BGR; SAM wants RGB


def get_prompts():
    return {"point_coords": np.array([[500, 375]]),     # (N, 2): x, y in pixels
            "point_labels": np.array([1]),              # (N,): 1 = object
            "multimask_output": True}


if __name__ == "__main__":
    predictor.set_image(get_image())
    masks, scores, logits = predictor.predict(**get_prompts())
    print(masks.shape, scores)
