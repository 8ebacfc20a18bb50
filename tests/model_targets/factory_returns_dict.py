def build_model():
    return {"backbone": "resnet18"}
