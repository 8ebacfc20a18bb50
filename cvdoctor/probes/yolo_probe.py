"""Entry point of the contained ultralytics run (the code lives in `cvdoctor.yolo.probe`):
``python -m cvdoctor.probes.yolo_probe`` with the JSON request on stdin."""
from cvdoctor.yolo.probe import main

if __name__ == "__main__":
    main()
