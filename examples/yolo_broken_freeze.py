"""Broken: the backbone is "frozen" the PyTorch way and the head is frozen the ultralytics way.

    cvdoctor model examples/yolo_broken_freeze.py --data yolo_shapes/data.yaml

model.yolo_train_step fails: freeze=[22] freezes the Detect head, which then cannot learn the
dataset's classes; and it warns: ultralytics' trainer builds its own model and trains the
parameters set to requires_grad=False below anyway (freeze=10 is the way to freeze layers 0-9).
"""
from ultralytics import YOLO

model = YOLO("yolov8n.yaml")
for p in model.model.model[:10].parameters():   # undone by the trainer
    p.requires_grad = False
imgsz = 128
freeze = [22]                                   # the head: nothing learns the new classes

if __name__ == "__main__":
    model.train(data="yolo_shapes/data.yaml", imgsz=imgsz, freeze=freeze, epochs=50)
