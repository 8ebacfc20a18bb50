"""A YOLOv8 training script, laid out so `cvdoctor model` can check it before the long run.

    python examples/yolo_make_data.py yolo_shapes
    cvdoctor model examples/yolo_train.py --data yolo_shapes/data.yaml

cvdoctor builds this YOLO object in a contained subprocess (nothing downloaded, nothing written
next to your labels), reads the settings below (and the literal ones in .train(...)), and runs
one training step through ultralytics' own trainer and loss on a few of your images.
"""
from ultralytics import YOLO

model = YOLO("yolov8n.yaml")   # random weights; YOLO("path/to/yolov8n.pt") to fine-tune
data = "yolo_shapes/data.yaml"
imgsz = 128
batch = 16
workers = 4

if __name__ == "__main__":
    model.train(data=data, imgsz=imgsz, batch=batch, workers=workers, epochs=50)
