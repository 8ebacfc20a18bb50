"""Broken: the guide's "SAM predictions are empty masks", twice over.

    cvdoctor model examples/sam_broken_prompts.py

model.sam_image warns: the image comes from cv2.imread (BGR) and goes to set_image as RGB.
model.sam_prompts fails: point_coords is a single (x, y) pair of shape (2,), not (N, 2).
Both are read from the source, so they are reported even before the checkpoint is downloaded.
"""
import cv2
import numpy as np
from segment_anything import SamPredictor, sam_model_registry

sam = sam_model_registry["vit_b"](checkpoint="sam_vit_b_01ec64.pth")
predictor = SamPredictor(sam)

if __name__ == "__main__":
    image = cv2.imread("photo.jpg")
    predictor.set_image(image)                                   # BGR handed over as RGB
    masks, scores, _ = predictor.predict(point_coords=np.array([500, 375]),
                                         point_labels=np.array([1]), multimask_output=False)
