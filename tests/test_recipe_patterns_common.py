"""Error-text patterns of the common recipes (troubleshooting-guide errors and everyday PyTorch CV
messages): realistic messages rank their recipe first, unrelated errors match none of them.

Messages are copied from real runs and reports: old and new PyTorch wording, CUDA/MPS/CPU
variants, ultralytics log lines, mmcv/mmengine and Jupyter tracebacks, different paths and pids.
"""
from __future__ import annotations

import re

import pytest

from cvdoctor.catalog import load_catalog, match_text

MINE = (
    "missing-timm", "missing-ultralytics", "missing-segment-anything", "missing-lap",
    "missing-opencv", "missing-torchvision", "sam-checkpoint-missing", "state-dict-mismatch",
    "hub-http-403", "accuracy-stuck-random", "transfer-learning-not-improving", "dtype-mismatch",
    "device-mismatch", "target-out-of-bounds", "shape-mismatch-linear", "channels-mismatch",
    "unet-shape-mismatch", "iou-zero", "yolo-empty-detections", "sam-empty-masks", "sam-oom",
    "cuda-oom", "vit-slow-training", "vit-low-accuracy", "inplace-modification",
    "tensor-does-not-require-grad", "nan-loss", "mixed-precision-fp16-underflow",
    "dataloader-worker-crash",
)


def tb(*frames: str, error: str, py: str = "/usr/local/lib/python3.11/site-packages") -> str:
    """A Python traceback: `frames` are (file, line, func, code) written as 'file:line:func:code'."""
    lines = ["Traceback (most recent call last):"]
    for frame in frames:
        path, line, func, code = frame.split(":", 3)
        path = path.replace("$PY", py)
        lines += [f'  File "{path}", line {line}, in {func}', f"    {code}"]
    return "\n".join(lines + [error])


SAM_ENCODER_OOM = tb(
    "/home/alice/sam/run.py:12:<module>:predictor.set_image(image)",
    "$PY/torch/utils/_contextlib.py:116:decorate_context:return func(*args, **kwargs)",
    "$PY/segment_anything/predictor.py:60:set_image:self.set_torch_image(input_image_torch, "
    "image.shape[:2])",
    "$PY/segment_anything/predictor.py:89:set_torch_image:self.features = "
    "self.model.image_encoder(input_image)",
    "$PY/torch/nn/modules/module.py:1751:_call_impl:return forward_call(*args, **kwargs)",
    "$PY/segment_anything/modeling/image_encoder.py:112:forward:x = blk(x)",
    "$PY/segment_anything/modeling/image_encoder.py:234:forward:attn = (q * self.scale) @ "
    "k.transpose(-2, -1)",
    error="torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB (GPU 0; "
          "3.81 GiB total capacity; 2.62 GiB already allocated; 412.19 MiB free; 2.71 GiB reserved "
          "in total by PyTorch)")

SAM_AMG_OOM = tb(
    "/workspace/notebooks/amg.py:31:<module>:masks = mask_generator.generate(image)",
    "$PY/segment_anything/automatic_mask_generator.py:163:generate:mask_data = "
    "self._generate_masks(image)",
    "$PY/segment_anything/automatic_mask_generator.py:206:_generate_masks:crop_data = "
    "self._process_crop(image, crop_box, layer_idx, orig_size)",
    "$PY/segment_anything/automatic_mask_generator.py:245:_process_crop:batch_data = "
    "self._process_batch(points, cropped_im_size, crop_box, orig_size)",
    "$PY/segment_anything/automatic_mask_generator.py:278:_process_batch:masks, iou_preds, _ = "
    "self.predictor.predict_torch(",
    "$PY/segment_anything/predictor.py:229:predict_torch:masks = "
    "self.model.postprocess_masks(low_res_masks, self.input_size, self.original_size)",
    "$PY/segment_anything/modeling/sam.py:170:postprocess_masks:masks = F.interpolate(masks, "
    "original_size, mode=\"bilinear\", align_corners=False)",
    error="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 8.58 GiB. GPU 0 has a total "
          "capacity of 23.55 GiB of which 2.31 GiB is free. Process 51234 has 21.23 GiB memory in "
          "use. Of the allocated memory 20.10 GiB is allocated by PyTorch, and 712.40 MiB is "
          "reserved by PyTorch but unallocated. If reserved but unallocated memory is large try "
          "setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See "
          "documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html"
          "#environment-variables)",
    py="/opt/conda/lib/python3.10/site-packages")

CUDA_ASSERT_LOG = (
    "../aten/src/ATen/native/cuda/Loss.cu:250: nll_loss_forward_reduce_cuda_kernel_2d: block: "
    "[0,0,0], thread: [5,0,0] Assertion `t >= 0 && t < n_classes` failed.\n"
    "../aten/src/ATen/native/cuda/Loss.cu:250: nll_loss_forward_reduce_cuda_kernel_2d: block: "
    "[0,0,0], thread: [9,0,0] Assertion `t >= 0 && t < n_classes` failed.\n"
    + tb("/home/alice/project/train.py:61:train_one_epoch:loss.backward()",
         "/home/alice/.venv/lib/python3.11/site-packages/torch/_tensor.py:648:backward:"
         "torch.autograd.backward(",
         error="RuntimeError: CUDA error: device-side assert triggered\nCUDA kernel errors might "
               "be asynchronously reported at some other API call, so the stacktrace below might "
               "be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\nCompile "
               "with `TORCH_USE_CUDA_DSA` to enable device-side assertions."))

SHM_BUS_ERROR_LOG = (
    "ERROR: Unexpected bus error encountered in worker. This might be caused by insufficient "
    "shared memory (shm).\n"
    + tb("$PY/torch/utils/data/dataloader.py:1251:_try_get_data:data = "
         "self._data_queue.get(timeout=timeout)",
         "$PY/torch/utils/data/_utils/signal_handling.py:73:handler:_error_if_any_worker_fails()",
         error="RuntimeError: DataLoader worker (pid 4121) is killed by signal: Bus error. It is "
               "possible that dataloader's workers are out of shared memory. Please try to raise "
               "your shared memory limit.")
    + "\n\nThe above exception was the direct cause of the following exception:\n\n"
    + tb("/workspace/train.py:88:<module>:for images, labels in train_loader:",
         "$PY/torch/utils/data/dataloader.py:1295:_try_get_data:raise RuntimeError(f'DataLoader "
         "worker (pid(s) {pids_str}) exited unexpectedly') from e",
         error="RuntimeError: DataLoader worker (pid(s) 4121) exited unexpectedly"))

# (recipe that must rank first, message)
FIRST = [
    # --- missing-timm
    ("missing-timm", tb("/home/alice/project/train.py:3:<module>:import timm",
                        error="ModuleNotFoundError: No module named 'timm'")),
    ("missing-timm", "ImportError: No module named timm"),
    ("missing-timm", "ModuleNotFoundError: No module named 'timm.models.layers.helpers'"),
    ("missing-timm", "ImportError: cannot import name 'resolve_pretrained_cfg' from "
                     "'timm.models.helpers' (/opt/conda/lib/python3.10/site-packages/timm/models/"
                     "helpers.py)"),
    ("missing-timm", "ImportError: \nTimmWrapperForImageClassification requires the timm library "
                     "but it was not found in your environment. You can install it with pip:\n"
                     "`pip install timm`. Please note that you may need to restart your runtime "
                     "after installation."),
    ("missing-timm", tb("tools/train.py:12:<module>:from mmpretrain.apis import init_model",
                        "/opt/conda/lib/python3.8/site-packages/mmcv/utils/registry.py:52:"
                        "build_from_cfg:obj_cls = registry.get(obj_type)",
                        "/opt/conda/lib/python3.8/site-packages/mmpretrain/models/backbones/"
                        "timm_backbone.py:8:<module>:import timm",
                        error="ModuleNotFoundError: No module named 'timm'")),
    # --- missing-ultralytics
    ("missing-ultralytics", tb("C:\\Users\\bob\\detect\\predict.py:1:<module>:"
                               "from ultralytics import YOLO",
                               error="ModuleNotFoundError: No module named 'ultralytics'")),
    ("missing-ultralytics", "ModuleNotFoundError: No module named 'ultralytics.yolo'"),
    ("missing-ultralytics", "ImportError: cannot import name 'YOLOv10' from 'ultralytics' "
                            "(/usr/local/lib/python3.10/dist-packages/ultralytics/__init__.py)"),
    ("missing-ultralytics", "---------------------------------------------------------------------"
                            "------\nModuleNotFoundError                       Traceback (most "
                            "recent call last)\nCell In[1], line 1\n----> 1 from ultralytics "
                            "import YOLO\n\nModuleNotFoundError: No module named 'ultralytics'"),
    # --- missing-segment-anything
    ("missing-segment-anything", tb("/workspace/labs/sam_demo.py:4:<module>:from segment_anything "
                                    "import sam_model_registry, SamPredictor",
                                    error="ModuleNotFoundError: No module named 'segment_anything'")),
    ("missing-segment-anything", "ImportError: cannot import name 'SamPredictor' from "
                                 "'segment_anything' (unknown location)"),
    ("missing-segment-anything", "No module named 'segment_anything'"),
    ("missing-segment-anything", "ModuleNotFoundError: No module named "
                                 "'segment_anything.utils.transforms'"),
    # --- missing-lap
    ("missing-lap", "requirements: Ultralytics requirement ['lap>=0.5.12'] not found, attempting "
                    "AutoUpdate..."),
    ("missing-lap", "    requirements: Ultralytics requirement ['lapx>=0.5.2'] not found, "
                    "attempting AutoUpdate..."),
    ("missing-lap", "WARNING ⚠️ requirements: Ultralytics requirements ['lap>=0.5.12', "
                    "'onnx>=1.12.0'] not found, attempting AutoUpdate..."),
    ("missing-lap", "requirements: Ultralytics requirement ['lap>=0.5.12'] not found, attempting "
                    "AutoUpdate...\nrequirements: ❌ AutoUpdate skipped (offline)\n"
                    + tb("/home/alice/track.py:5:<module>:results = model.track(source='cars.mp4')",
                         "$PY/ultralytics/trackers/utils/matching.py:19:<module>:import lap",
                         error="ModuleNotFoundError: No module named 'lap'")),
    ("missing-lap", "[Detector] Tracking failed (No module named 'lap'), using plain detect"),
    ("missing-lap", "ModuleNotFoundError: No module named 'lap._lapjv'"),
    # --- missing-opencv
    ("missing-opencv", "ModuleNotFoundError: No module named 'cv2'"),
    ("missing-opencv", tb("/app/serve.py:2:<module>:from ultralytics import YOLO",
                          "$PY/ultralytics/utils/__init__.py:18:<module>:import cv2",
                          error="ImportError: libGL.so.1: cannot open shared object file: No such "
                                "file or directory")),
    ("missing-opencv", "ImportError: libgthread-2.0.so.0: cannot open shared object file: No such "
                       "file or directory"),
    ("missing-opencv", tb("tools/test.py:9:<module>:import mmcv",
                          "/opt/conda/lib/python3.7/site-packages/mmcv/image/io.py:5:<module>:"
                          "import cv2",
                          error="ImportError: libSM.so.6: cannot open shared object file: No such "
                                "file or directory")),
    # --- missing-torchvision
    ("missing-torchvision", tb("/home/alice/project/train.py:2:<module>:from torchvision import "
                               "datasets, transforms",
                               error="ModuleNotFoundError: No module named 'torchvision'")),
    ("missing-torchvision", "ImportError: No module named torchvision"),
    ("missing-torchvision", tb("inference_realesrgan.py:6:<module>:from basicsr.archs.rrdbnet_arch "
                               "import RRDBNet",
                               "$PY/basicsr/data/degradations.py:8:<module>:from "
                               "torchvision.transforms.functional_tensor import rgb_to_grayscale",
                               error="ModuleNotFoundError: No module named "
                                     "'torchvision.transforms.functional_tensor'")),
    # --- sam-checkpoint-missing
    ("sam-checkpoint-missing", tb("/home/alice/sam/segment.py:9:<module>:sam = sam_model_registry"
                                  "[\"vit_h\"](checkpoint=\"sam_vit_h_4b8939.pth\")",
                                  "$PY/segment_anything/build_sam.py:15:build_sam_vit_h:return "
                                  "_build_sam(",
                                  "$PY/segment_anything/build_sam.py:105:_build_sam:with "
                                  "open(checkpoint, \"rb\") as f:",
                                  error="FileNotFoundError: [Errno 2] No such file or directory: "
                                        "'sam_vit_h_4b8939.pth'")),
    ("sam-checkpoint-missing", "FileNotFoundError: sam_vit_h_4b8939.pth"),
    ("sam-checkpoint-missing", "FileNotFoundError: [Errno 2] No such file or directory: "
                               "'/workspace/checkpoints/sam_vit_l_0b3195.pth'"),
    ("sam-checkpoint-missing", "FileNotFoundError: [Errno 2] No such file or directory: "
                               "'C:\\\\Users\\\\bob\\\\models\\\\sam_vit_b_01ec64.pth'"),
    # --- state-dict-mismatch
    ("state-dict-mismatch", 'RuntimeError: Error(s) in loading state_dict for Sequential:\n'
                            '\tMissing key(s) in state_dict: "0.weight", "0.bias". \n'
                            '\tUnexpected key(s) in state_dict: "module.weight", "module.bias". '),
    ("state-dict-mismatch", tb("/home/alice/project/eval.py:22:<module>:"
                               "model.load_state_dict(torch.load(args.ckpt))",
                               "$PY/torch/nn/modules/module.py:2593:load_state_dict:raise "
                               "RuntimeError(",
                               error="RuntimeError: Error(s) in loading state_dict for ResNet:\n"
                                     "\tsize mismatch for fc.weight: copying a param with shape "
                                     "torch.Size([1000, 512]) from checkpoint, the shape in "
                                     "current model is torch.Size([10, 512]).\n\tsize mismatch for "
                                     "fc.bias: copying a param with shape torch.Size([1000]) from "
                                     "checkpoint, the shape in current model is "
                                     "torch.Size([10]).")),
    ("state-dict-mismatch", "RuntimeError: Error(s) in loading state_dict for Sam:\n\tsize "
                            "mismatch for image_encoder.pos_embed: copying a param with shape "
                            "torch.Size([1, 64, 64, 1280]) from checkpoint, the shape in current "
                            "model is torch.Size([1, 64, 64, 768])."),
    ("state-dict-mismatch", "2024/05/02 10:41:07 - mmengine - WARNING - The model and loaded state "
                            "dict do not match exactly\n\nunexpected key in source state_dict: "
                            "fc.weight, fc.bias\n\nmissing keys in source state_dict: "
                            "head.fc.weight, head.fc.bias"),
    ("state-dict-mismatch", "_IncompatibleKeys(missing_keys=['fc.weight', 'fc.bias'], "
                            "unexpected_keys=[])"),
    ("state-dict-mismatch", "_IncompatibleKeys(missing_keys=[], unexpected_keys=['state_dict', "
                            "'optimizer', 'epoch'])"),
    ("state-dict-mismatch", "RuntimeError: Error(s) in loading state_dict for "
                            "ViTForImageClassification:\n\tsize mismatch for classifier.weight: "
                            "copying a param with shape torch.Size([1000, 768]) from checkpoint, "
                            "the shape in current model is torch.Size([10, 768]).\n\tYou may "
                            "consider adding `ignore_mismatched_sizes=True` in the model "
                            "`from_pretrained` method."),
    # --- hub-http-403
    ("hub-http-403", "huggingface_hub.errors.GatedRepoError: 403 Client Error. (Request ID: "
                     "Root=1-65f1c2a3-0d9e4b5c6a7f8e9d0c1b2a3f;8c203dcc-d81b-4e93-bcee-59e7f662e0c1)"
                     "\n\nCannot access gated repo for url https://huggingface.co/org/model/resolve"
                     "/main/config.json.\nAccess to model org/model is restricted and you are not "
                     "in the authorized list. Visit https://huggingface.co/org/model to ask for "
                     "access."),
    ("hub-http-403", "huggingface_hub.utils._errors.GatedRepoError: 401 Client Error. (Request ID: "
                     "Root=1-6543a1b2-3c4d5e6f7a8b9c0d1e2f3a4b)\n\nCannot access gated repo for url "
                     "https://huggingface.co/facebook/sam-vit-huge/resolve/main/config.json.\n"
                     "Access to model facebook/sam-vit-huge is restricted. You must be "
                     "authenticated to access it."),
    ("hub-http-403", "OSError: You are trying to access a gated repo.\nMake sure to have access "
                     "to it at https://huggingface.co/timm/some-gated-model.\n401 Client Error."),
    ("hub-http-403", tb("/home/alice/yolo.py:3:<module>:model = torch.hub.load('ultralytics/"
                        "yolov5', 'yolov5s')",
                        "$PY/torch/hub.py:207:_validate_not_a_forked_repo:response = "
                        "json.loads(_read_url(Request(url, headers=headers)))",
                        "/usr/lib/python3.11/urllib/request.py:643:http_error_default:raise "
                        "HTTPError(req.full_url, code, msg, hdrs, fp)",
                        error="urllib.error.HTTPError: HTTP Error 403: rate limit exceeded")),
    ("hub-http-403", "requests.exceptions.HTTPError: 403 Client Error: Forbidden for url: "
                     "https://huggingface.co/api/models/org/model/revision/main"),
    # A 401 alone is any service's (a GitHub API token, a REST server): only one from a weight
    # download is ours (issue 11's unrelated corpus holds bare ones).
    ("hub-http-403", tb("/home/alice/yolo.py:3:<module>:model = torch.hub.load('org/private-"
                        "repo', 'model')",
                        "$PY/torch/hub.py:207:_validate_not_a_forked_repo:response = "
                        "json.loads(_read_url(Request(url, headers=headers)))",
                        error="urllib.error.HTTPError: HTTP Error 401: Unauthorized")),
    # A 403 too is a weight download's only with its URL or the hub call in the text (scrapers
    # and APIs answer 403 all day); wget names the URL first.
    ("hub-http-403", "--2024-03-01 10:22:12--  https://github.com/ultralytics/assets/releases/download/"
                     "v8.1.0/yolov8n.pt\nHTTP request sent, awaiting response... 403 Forbidden\n"
                     "2024-03-01 10:22:13 ERROR 403: Forbidden."),
    ("hub-http-403", "model = torchvision.models.resnet50(pretrained=True)\nHTTPError 403: Forbidden"),
    # --- accuracy-stuck-random
    ("accuracy-stuck-random", "my CNN accuracy is stuck at 10% on CIFAR-10"),
    ("accuracy-stuck-random", "val_acc stuck at 0.1000 after 20 epochs"),
    ("accuracy-stuck-random", "training accuracy stuck around random no matter the lr"),
    ("accuracy-stuck-random", "The model seems stuck at chance level."),
    # --- transfer-learning-not-improving
    ("transfer-learning-not-improving", "transfer learning not improving"),
    ("transfer-learning-not-improving", "Fine-tuned ResNet50: accuracy barely better than random"),
    ("transfer-learning-not-improving", "fine-tuning efficientnet_b0 on my dataset, val accuracy "
                                        "not improving"),
    # --- dtype-mismatch
    ("dtype-mismatch", "RuntimeError: Input type (torch.cuda.FloatTensor) and weight type "
                       "(torch.cuda.HalfTensor) should be the same"),
    ("dtype-mismatch", "RuntimeError: Input type (torch.FloatTensor) and weight type "
                       "(torch.DoubleTensor) should be the same"),
    ("dtype-mismatch", "RuntimeError: Input type (float) and bias type (c10::Half) should be the "
                       "same"),
    ("dtype-mismatch", "RuntimeError: Input type (double) and bias type (float) should be the same"),
    ("dtype-mismatch", "RuntimeError: Input type (float) and bias type (c10::BFloat16) should be "
                       "the same"),
    ("dtype-mismatch", "RuntimeError: Input type (CUDABFloat16Type) and weight type "
                       "(torch.cuda.HalfTensor) should be the same"),
    ("dtype-mismatch", "RuntimeError: mat1 and mat2 must have the same dtype, but got Double and "
                       "Float"),
    ("dtype-mismatch", "RuntimeError: mat1 and mat2 must have the same dtype, but got Float and "
                       "BFloat16"),
    ("dtype-mismatch", "RuntimeError: expected m1 and m2 to have the same dtype, but got: double "
                       "!= float"),
    ("dtype-mismatch", "RuntimeError: expected scalar type Float but found Double"),
    ("dtype-mismatch", "RuntimeError: Expected object of scalar type Double but got scalar type "
                       "Float for argument #2 'mat2' in call to _th_mm"),
    ("dtype-mismatch", "RuntimeError: \"slow_conv2d_cpu\" not implemented for 'Half'"),
    ("dtype-mismatch", "RuntimeError: \"addmm_impl_cpu_\" not implemented for 'Half'"),
    ("dtype-mismatch", "RuntimeError: Found dtype Long but expected Float"),
    ("dtype-mismatch", tb("tools/train.py:260:<module>:main()",
                          "/opt/conda/lib/python3.8/site-packages/mmcv/cnn/bricks/conv_module.py:"
                          "207:forward:x = self.conv(x)",
                          "/opt/conda/lib/python3.8/site-packages/torch/nn/modules/conv.py:459:"
                          "_conv_forward:return F.conv2d(input, weight, bias, self.stride,",
                          error="RuntimeError: Input type (torch.cuda.HalfTensor) and weight type "
                                "(torch.cuda.FloatTensor) should be the same")),
    # --- device-mismatch
    ("device-mismatch", "RuntimeError: Expected all tensors to be on the same device, but found at "
                        "least two devices, cuda:0 and cpu! (when checking argument for argument "
                        "mat1 in method wrapper_CUDA_addmm)"),
    ("device-mismatch", "RuntimeError: Expected all tensors to be on the same device, but found at "
                        "least two devices, cpu and cuda:0! (when checking argument for argument "
                        "index in method wrapper__index_select)"),
    ("device-mismatch", "RuntimeError: Expected all tensors to be on the same device, but got mat1 "
                        "is on cpu, different from other tensors on cuda:0 (when checking argument "
                        "in method wrapper_CUDA_addmm)"),
    ("device-mismatch", "RuntimeError: Expected all tensors to be on the same device, but found at "
                        "least two devices, mps:0 and cpu!"),
    ("device-mismatch", "RuntimeError: Input type (torch.FloatTensor) and weight type "
                        "(torch.cuda.FloatTensor) should be the same or input should be a MKLDNN "
                        "tensor and weight is a dense tensor"),
    ("device-mismatch", "RuntimeError: Input type (torch.cuda.FloatTensor) and weight type "
                        "(torch.FloatTensor) should be the same"),
    ("device-mismatch", "RuntimeError: Input type (MPSFloatType) and weight type "
                        "(torch.FloatTensor) should be the same"),
    ("device-mismatch", "RuntimeError: Input type (CUDABFloat16Type) and weight type "
                        "(CPUBFloat16Type) should be the same"),
    ("device-mismatch", "RuntimeError: Input type (torch.FloatTensor) and weight type "
                        "(torch.cuda.HalfTensor) should be the same"),
    ("device-mismatch", "RuntimeError: Expected object of device type cuda but got device type cpu "
                        "for argument #1 'self' in call to _th_addmm"),
    ("device-mismatch", "RuntimeError: Tensor for argument #2 'mat1' is on CPU, but expected it to "
                        "be on GPU (while checking arguments for addmm)"),
    ("device-mismatch", "RuntimeError: indices should be either on cpu or on the same device as "
                        "the indexed tensor (cpu)"),
    ("device-mismatch", "RuntimeError: Tensor on device cpu is not on the expected device meta!"),
    # --- target-out-of-bounds
    ("target-out-of-bounds", tb("/home/alice/project/train.py:58:train_one_epoch:loss = "
                                "criterion(outputs, labels)",
                                "$PY/torch/nn/functional.py:3494:cross_entropy:return "
                                "torch._C._nn.cross_entropy_loss(",
                                error="IndexError: Target 10 is out of bounds.")),
    ("target-out-of-bounds", "IndexError: Target -1 is out of bounds."),
    ("target-out-of-bounds", CUDA_ASSERT_LOG),
    ("target-out-of-bounds", "/pytorch/aten/src/THCUNN/ClassNLLCriterion.cu:106: void "
                             "cunn_ClassNLLCriterion_updateOutput_kernel(Dtype *, Dtype *, Dtype *, "
                             "long *, Dtype *, int, int, int, int, long) [with Dtype = float, "
                             "Acctype = float]: block: [0,0,0], thread: [3,0,0] Assertion `t >= 0 "
                             "&& t < n_classes` failed."),
    ("target-out-of-bounds", "RuntimeError: Assertion `cur_target >= 0 && cur_target < n_classes' "
                             "failed.  at /opt/conda/conda-bld/pytorch_1556653099582/work/aten/src/"
                             "THNN/generic/ClassNLLCriterion.c:94"),
    ("target-out-of-bounds", tb("/home/bob/seg/train.py:40:<module>:loss = F.cross_entropy(out, "
                                "mask)",
                                "$PY/torch/nn/functional.py:3494:cross_entropy:return "
                                "torch._C._nn.cross_entropy_loss(input, target, weight, "
                                "_Reduction.get_enum(reduction), ignore_index, label_smoothing)",
                                error="RuntimeError: CUDA error: device-side assert triggered")),
    # --- shape-mismatch-linear
    ("shape-mismatch-linear", "RuntimeError: mat1 and mat2 shapes cannot be multiplied (16x2048 "
                              "and 512x10)"),
    ("shape-mismatch-linear", "RuntimeError: addmm: mat1 and mat2 shapes cannot be multiplied "
                              "(16x2048 and 512x10)"),
    ("shape-mismatch-linear", "RuntimeError: size mismatch, m1: [16 x 2048], m2: [512 x 10] at "
                              "/pytorch/aten/src/TH/generic/THTensorMath.cpp:41"),
    ("shape-mismatch-linear", "RuntimeError: shape '[-1, 400]' is invalid for input of size 9600"),
    ("shape-mismatch-linear", "ValueError: Expected input batch_size (96) to match target "
                              "batch_size (16)."),
    ("shape-mismatch-linear", tb("/home/alice/cifar/model.py:27:forward:x = self.fc1(x)",
                                 "$PY/torch/nn/modules/linear.py:134:forward:return F.linear("
                                 "input, self.weight, self.bias)",
                                 error="RuntimeError: mat1 and mat2 shapes cannot be multiplied "
                                       "(32x44944 and 400x120)")),
    # --- channels-mismatch
    ("channels-mismatch", "RuntimeError: Given groups=1, weight of size [64, 3, 7, 7], expected "
                          "input[16, 224, 224, 3] to have 3 channels, but got 224 channels "
                          "instead"),
    ("channels-mismatch", "RuntimeError: Given groups=1, weight of size [64, 3, 7, 7], expected "
                          "input[16, 1, 224, 224] to have 3 channels, but got 1 channels instead"),
    ("channels-mismatch", "RuntimeError: Given groups=1, weight of size [32, 3, 3, 3], expected "
                          "input[1, 4, 512, 512] to have 3 channels, but got 4 channels instead"),
    ("channels-mismatch", "RuntimeError: Given groups=1, weight[64, 3, 7, 7], so expected "
                          "input[16, 224, 224, 3] to have 3 channels, but got 224 channels "
                          "instead"),
    ("channels-mismatch", "RuntimeError: running_mean should contain 224 elements not 64"),
    ("channels-mismatch", "RuntimeError: Expected 4-dimensional input for 4-dimensional weight "
                          "[64, 3, 7, 7], but got 3-dimensional input of size [3, 224, 224] "
                          "instead"),
    # --- unet-shape-mismatch
    ("unet-shape-mismatch", tb("/home/alice/seg/unet.py:41:forward:x = torch.cat([skip, x], "
                               "dim=1)",
                               error="RuntimeError: Sizes of tensors must match except in "
                                     "dimension 1. Expected size 33 but got size 32 for tensor "
                                     "number 1 in the list.")),
    ("unet-shape-mismatch", "RuntimeError: Sizes of tensors must match except in dimension 1. Got "
                            "33 and 32 in dimension 2 (The offending index is 1)"),
    ("unet-shape-mismatch", "RuntimeError: invalid argument 0: Sizes of tensors must match except "
                            "in dimension 1. Got 33 and 32 in dimension 2 at /pytorch/aten/src/THC/"
                            "generic/THCTensorMath.cu:71"),
    ("unet-shape-mismatch", "RuntimeError: input and target batch or spatial sizes don't match: "
                            "target [4, 256, 256], input [4, 3, 252, 252] at /pytorch/aten/src/"
                            "THCUNN/generic/SpatialClassNLLCriterion.cu:23"),
    ("unet-shape-mismatch", "RuntimeError: only batches of spatial targets supported (3D tensors) "
                            "but got targets of dimension: 4"),
    # --- iou-zero
    ("iou-zero", "epoch 5  loss 0.061  pixel_acc 0.985  mIoU: 0.0000"),
    ("iou-zero", "val_mIoU=0.0 dice=0.0"),
    ("iou-zero", "IoU is always 0 for the tumour class"),
    ("iou-zero", "my Dice score is zero after 30 epochs"),
    # --- yolo-empty-detections
    ("yolo-empty-detections", "image 1/1 /home/alice/data/street.jpg: 480x640 (no detections), "
                              "38.2ms\nSpeed: 1.9ms preprocess, 38.2ms inference, 0.6ms "
                              "postprocess per image at shape (1, 3, 480, 640)"),
    ("yolo-empty-detections", "video 1/1 (frame 12/300) /data/cam.mp4: 384x640 (no detections), "
                              "9.1ms"),
    ("yolo-empty-detections", "Results: 0 detections"),
    ("yolo-empty-detections", "YOLOv8 returns no boxes on my images"),
    # --- sam-empty-masks
    ("sam-empty-masks", tb("/home/alice/sam/click.py:20:<module>:masks, scores, logits = "
                           "predictor.predict(point_coords=pts)",
                           "$PY/segment_anything/predictor.py:139:predict:assert (",
                           error="AssertionError: point_labels must be supplied if point_coords "
                                 "is supplied.")),
    ("sam-empty-masks", "RuntimeError: An image must be set with .set_image(...) before mask "
                        "prediction."),
    ("sam-empty-masks", "SAM predictor returns empty masks for every point"),
    # --- sam-oom
    ("sam-oom", SAM_ENCODER_OOM),
    ("sam-oom", SAM_AMG_OOM),
    ("sam-oom", "SAM vit_h out of memory on 4000x3000 images"),
    ("sam-oom", tb("/home/alice/seg.py:7:<module>:results = model('big.jpg', bboxes=[100, 100, "
                   "800, 800])",
                   "$PY/ultralytics/models/sam/predict.py:171:inference:return "
                   "self.prompt_inference(im, bboxes, points, labels, masks, multimask_output)",
                   "$PY/ultralytics/models/sam/modules/encoders.py:141:forward:x = blk(x)",
                   error="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
                         "GPU 0 has a total capacity of 7.78 GiB of which 1.02 GiB is free.")),
    # --- cuda-oom
    ("cuda-oom", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 "
                 "has a total capacity of 15.78 GiB of which 10.75 MiB is free. Process 4012 has "
                 "15.77 GiB memory in use. Of the allocated memory 14.10 GiB is allocated by "
                 "PyTorch, and 1.20 GiB is reserved by PyTorch but unallocated. If reserved but "
                 "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF="
                 "expandable_segments:True to avoid fragmentation."),
    ("cuda-oom", "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB "
                 "total capacity; 14.10 GiB already allocated; 10.75 MiB free; 14.30 GiB reserved "
                 "in total by PyTorch)"),
    ("cuda-oom", tb("/home/alice/project/train.py:74:train_one_epoch:outputs = model(images)",
                    "$PY/torch/nn/modules/module.py:1751:_call_impl:return forward_call(*args, "
                    "**kwargs)",
                    error="torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate "
                          "512.00 MiB (GPU 0; 7.79 GiB total capacity; 6.12 GiB already "
                          "allocated; 301.44 MiB free; 6.50 GiB reserved in total by PyTorch) If "
                          "reserved memory is >> allocated memory try setting max_split_size_mb "
                          "to avoid fragmentation.")),
    ("cuda-oom", "RuntimeError: MPS backend out of memory (MPS allocated: 17.80 GB, other "
                 "allocations: 384.00 KB, max allowed: 18.13 GB). Tried to allocate 256.00 MB on "
                 "private pool. Use PYTORCH_MPS_HIGH_WATERMARK_RATIO=0.0 to disable upper limit "
                 "for memory allocations (may cause system failure)."),
    ("cuda-oom", "RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. "
                 "DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                 "1125899906842624 bytes. Error code 12 (Cannot allocate memory)"),
    ("cuda-oom", "RuntimeError: [enforce fail at ..\\c10\\core\\impl\\alloc_cpu.cpp:72] data. "
                 "DefaultCPUAllocator: not enough memory: you tried to allocate 3221225472 bytes."),
    ("cuda-oom", "RuntimeError: CUDA error: out of memory\nCUDA kernel errors might be "
                 "asynchronously reported at some other API call"),
    ("cuda-oom", "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling "
                 "`cublasCreate(handle)`"),
    ("cuda-oom", "torch.OutOfMemoryError: HIP out of memory. Tried to allocate 2.00 GiB. GPU 0 "
                 "has a total capacity of 15.98 GiB of which 1.10 GiB is free."),
    ("cuda-oom", "06/12 09:14:55 - mmengine - ERROR - CUDA out of memory. Tried to allocate "
                 "1.20 GiB (GPU 0; 10.76 GiB total capacity; 8.31 GiB already allocated)"),
    # --- vit-slow-training
    ("vit-slow-training", "ViT training is extremely slow"),
    ("vit-slow-training", "my vision transformer from scratch is not converging on CIFAR-10"),
    ("vit-slow-training", "DeiT converges very slowly compared to resnet"),
    # --- vit-low-accuracy
    ("vit-low-accuracy", "ViT accuracy much lower than CNN"),
    ("vit-low-accuracy", "vit_small gets worse than ResNet18 on my 5k-image dataset"),
    ("vit-low-accuracy", "Vision transformer has poor accuracy on a small dataset"),
    # --- inplace-modification
    ("inplace-modification", tb("/home/alice/gan/train.py:88:<module>:loss_G.backward()",
                                "$PY/torch/_tensor.py:648:backward:torch.autograd.backward(",
                                error="RuntimeError: one of the variables needed for gradient "
                                      "computation has been modified by an inplace operation: "
                                      "[torch.cuda.FloatTensor [16, 64, 32, 32]], which is output "
                                      "0 of ReluBackward0, is at version 2; expected version 1 "
                                      "instead. Hint: enable anomaly detection to find the "
                                      "operation that failed to compute its gradient, with "
                                      "torch.autograd.set_detect_anomaly(True).")),
    ("inplace-modification", "RuntimeError: one of the variables needed for gradient computation "
                             "has been modified by an inplace operation: [torch.FloatTensor [2, "
                             "3]], which is output 0 of Relu, is at version 1; expected version 0 "
                             "instead. Hint: enable anomaly detection to find the operation that "
                             "failed to compute its gradient, with torch.autograd."
                             "set_detect_anomaly(True, check_nan=False)."),
    ("inplace-modification", "RuntimeError: a leaf Variable that requires grad is being used in "
                             "an in-place operation."),
    ("inplace-modification", "RuntimeError: a leaf Variable that requires grad has been used in "
                             "an in-place operation."),
    ("inplace-modification", "RuntimeError: Output 0 of UnbindBackward0 is a view and its base or "
                             "another view of its base has been modified inplace. This view is "
                             "the output of a function that returns multiple views."),
    ("inplace-modification", "RuntimeError: Output 0 of SliceBackward0 is a view and is being "
                             "modified inplace. This view was created inside a custom Function"),
    # --- tensor-does-not-require-grad
    ("tensor-does-not-require-grad", tb("/home/alice/project/train.py:77:train_step:"
                                        "loss.backward()",
                                        "$PY/torch/autograd/__init__.py:353:backward:"
                                        "_engine_run_backward(",
                                        error="RuntimeError: element 0 of tensors does not "
                                              "require grad and does not have a grad_fn")),
    ("tensor-does-not-require-grad", "RuntimeError: Inference tensors cannot be saved for "
                                     "backward. To work around you can make a clone to get a "
                                     "normal tensor and use it in autograd."),
    ("tensor-does-not-require-grad", "element 0 of tensors does not require grad and does not "
                                     "have a grad_fn"),
    # --- nan-loss
    ("nan-loss", "Epoch: [3]  [ 120/1563]  eta: 0:04:11  lr: 0.010000  loss: nan (2.1034)  "
                 "time: 0.1610  data: 0.0021  max mem: 1620\nLoss is nan, stopping training"),
    ("nan-loss", "Loss is inf, stopping training"),
    ("nan-loss", "RuntimeError: Function 'LogSoftmaxBackward0' returned nan values in its 0th "
                 "output."),
    ("nan-loss", "RuntimeError: Function 'LogSoftmaxBackward' returned nan values in its 0th "
                 "output."),
    ("nan-loss", "2024/06/01 12:00:01 - mmengine - INFO - Epoch(train)  [1][ 50/500]  lr: "
                 "1.0000e-02  eta: 0:10:12  time: 0.2301  data_time: 0.0102  memory: 3120  loss: "
                 "nan  loss_cls: nan  loss_bbox: nan"),
    ("nan-loss", "RuntimeError: The total norm of order 2.0 for gradients from `parameters` is "
                 "non-finite, so it cannot be clipped. To disable this error and scale the "
                 "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"),
    ("nan-loss", "WARNING:root:NaN or Inf found in input tensor."),
    ("nan-loss", "after a few hundred steps my loss becomes NaN"),
    ("nan-loss", "train loss = inf at step 42"),
    ("nan-loss", "getting nan loss after epoch 3 with lr=0.1"),
    # --- mixed-precision-fp16-underflow
    ("mixed-precision-fp16-underflow", tb("/home/alice/project/train_amp.py:66:<module>:"
                                          "scaler.step(optimizer)",
                                          "$PY/torch/amp/grad_scaler.py:451:step:"
                                          "self.unscale_(optimizer)",
                                          "$PY/torch/amp/grad_scaler.py:275:_unscale_grads_:raise "
                                          "ValueError(\"Attempting to unscale FP16 gradients.\")",
                                          error="ValueError: Attempting to unscale FP16 "
                                                "gradients.")),
    ("mixed-precision-fp16-underflow", "/home/alice/.venv/lib/python3.11/site-packages/torch/amp/"
                                       "grad_scaler.py:136: UserWarning: torch.cuda.amp.GradScaler "
                                       "is enabled, but CUDA is not available.  Disabling."),
    ("mixed-precision-fp16-underflow", "UserWarning: User provided device_type of 'cuda', but "
                                       "CUDA is not available. Disabling"),
    ("mixed-precision-fp16-underflow", "UserWarning: CUDA is not available or torch_xla is "
                                       "imported. Disabling autocast."),
    ("mixed-precision-fp16-underflow", "RuntimeError: Current CUDA Device does not support "
                                       "bfloat16. Please switch dtype to float16."),
    # --- dataloader-worker-crash
    ("dataloader-worker-crash", tb("$PY/torch/utils/data/_utils/signal_handling.py:73:handler:"
                                   "_error_if_any_worker_fails()",
                                   error="RuntimeError: DataLoader worker (pid 28763) is killed by "
                                         "signal: Killed.")
     + "\n\nThe above exception was the direct cause of the following exception:\n\n"
     + tb("/home/alice/project/train.py:90:<module>:for images, labels in loader:",
          error="RuntimeError: DataLoader worker (pid(s) 28763, 28764) exited unexpectedly")),
    ("dataloader-worker-crash", "RuntimeError: DataLoader worker (pid 1734) exited unexpectedly "
                                "with exit code 1. Details are lost due to multiprocessing. "
                                "Rerunning with num_workers=0 may give better error trace."),
    ("dataloader-worker-crash", "RuntimeError: DataLoader worker (pid 9120) is killed by signal: "
                                "Segmentation fault. "),
    ("dataloader-worker-crash", "RuntimeError: DataLoader worker (pid 9120) is killed by signal: "
                                "Aborted. "),
    ("dataloader-worker-crash", "RuntimeError: DataLoader worker (pid(s) 812) exited "
                                "unexpectedly"),
    # --- older and other wordings added with issue 11 (tests/test_recipe_patterns_breadth.py has
    # the full table for that patterns)
    ("missing-lap", 'requirements: YOLOv8 requirement "lap>=0.4" not found, attempting '
                    "AutoUpdate..."),
    ("state-dict-mismatch", "KeyError: 'unexpected key \"module.features.0.weight\" in "
                            "state_dict'"),
    ("hub-http-403", "requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: "
                     "https://huggingface.co/org/private-model/resolve/main/config.json"),
    ("dtype-mismatch", "RuntimeError: Input type (CUDAHalfTensor) and weight type "
                       "(CUDAFloatTensor) should be the same"),
    ("dtype-mismatch", "RuntimeError: Expected tensor for argument #1 'input' to have the same "
                       "type as tensor for argument #2 'weight'; but type torch.cuda.FloatTensor "
                       "does not equal torch.cuda.HalfTensor (while checking arguments for "
                       "cudnn_convolution)"),
    ("dtype-mismatch", "RuntimeError: expected backend CPU and dtype Float but got backend CPU "
                       "and dtype Double"),
    ("dtype-mismatch", "RuntimeError: Expected object of type torch.DoubleTensor but found type "
                       "torch.FloatTensor for argument #2 'weight'"),
    ("dtype-mismatch", "RuntimeError: expected dtype Float but got dtype Long"),
    ("dtype-mismatch", "RuntimeError: Expected object of scalar type Long but got scalar type "
                       "Float for argument #3 'mat1'"),
    ("device-mismatch", "RuntimeError: Placeholder storage has not been allocated on MPS "
                        "device!"),
    ("device-mismatch", "RuntimeError: Input type (torch.FloatTensor) and weight type\n"
                        "(torch.cuda.FloatTensor) should be the same or input should be a MKLDNN "
                        "tensor and weight is a dense tensor"),
    ("unet-shape-mismatch", "RuntimeError: inconsistent tensor sizes at /pytorch/torch/lib/TH/"
                            "generic/THTensorMath.c:2864"),
    ("cuda-oom", "RuntimeError: [enforce fail at CPUAllocator.cpp:64] posix_memalign(&data, "
                 "gAlignment, nbytes) == 0. 12 vs 0"),
    ("nan-loss", "FloatingPointError: Loss became infinite or NaN at iteration=512!\nloss_dict = "
                 "{'loss_cls': nan, 'loss_box_reg': nan}"),
    ("nan-loss", "ValueError: model outputs are NaN, stopping"),
    ("nan-loss", "[W python_anomaly_mode.cpp:104] Warning: Error detected in LogSoftmaxBackward0. "
                 "Traceback of forward call that caused the error:"),
]

# Errors that must match none of the recipes above (they may still match someone else's).
UNRELATED = [
    "KeyError: 'lr'",
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='x', port=443): Max retries "
    "exceeded with url: /resolve/main/model.safetensors",
    "ZeroDivisionError: division by zero",
    "AttributeError: 'NoneType' object has no attribute 'shape'",
    "ValueError: too many values to unpack (expected 2)",
    "FileNotFoundError: [Errno 2] No such file or directory: 'data/train.csv'",
    "FileNotFoundError: [Errno 2] No such file or directory: 'checkpoints/resnet50_best.pth'",
    "urllib.error.HTTPError: HTTP Error 404: Not Found",
    "requests.exceptions.HTTPError: 404 Client Error: Not Found for url: "
    "https://example.org/datasets/cifar-10-python.tar.gz",
    "urllib.error.HTTPError: HTTP Error 503: Service Unavailable",
    "requests.exceptions.HTTPError: 500 Server Error: Internal Server Error for url: "
    "https://huggingface.co/api/models",
    "Epoch 403/500  loss 0.1234  acc 0.9612",
    "ModuleNotFoundError: No module named 'torchmetrics'",
    "ModuleNotFoundError: No module named 'laplace'",
    "ModuleNotFoundError: No module named 'timm_extras'",
    "ModuleNotFoundError: No module named 'ultralytics_thop'",
    "ModuleNotFoundError: No module named 'sam2'",
    "RuntimeError: operator torchvision::nms does not exist",
    "<All keys matched successfully>",
    "_IncompatibleKeys(missing_keys=[], unexpected_keys=[])",
    "KeyError: Caught KeyError in DataLoader worker process 0.\nOriginal Traceback (most recent "
    "call last):\n  File \"/home/alice/project/data.py\", line 31, in __getitem__\n    label = "
    "self.labels[name]\nKeyError: 'img_0042.jpg'",
    "RuntimeError: Too many open files. Communication with the workers is no longer possible.",
    "TypeError: forward() missing 1 required positional argument: 'x'",
    "IndexError: list index out of range",
    "RuntimeError: Trying to backward through the graph a second time (or directly access saved "
    "tensors after they have already been freed).",
    "image 1/1 /home/alice/bus.jpg: 640x480 4 persons, 1 bus, 45.2ms",
    "Epoch 10: train_acc 0.912 val_acc 0.874 mIoU: 0.7312 IoU: 0.85",
    "val accuracy 92.1% after 10 epochs",
    "WARNING ⚠️ NMS time limit 2.050s exceeded",
    "UserWarning: The given NumPy array is not writable",
    "FutureWarning: `torch.cuda.amp.GradScaler(args...)` is deprecated. Please use "
    "`torch.amp.GradScaler('cuda', args...)` instead.",
    "Downloading: \"https://download.pytorch.org/models/resnet18-f37072fd.pth\" to "
    "/home/alice/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth",
]

# Logs where another recipe owns the problem: none of ours may rank first.
OWNED_ELSEWHERE = [
    ("shm-docker-ipc", SHM_BUS_ERROR_LOG),
    ("torchvision-torch-mismatch", "RuntimeError: operator torchvision::nms does not exist"),
    ("unnormalized-input", "RuntimeError: Input type (unsigned char) and bias type (float) should "
                           "be the same"),
    ("labels-wrong-dtype", "RuntimeError: expected target dtype to be Long or Byte, but got Float"),
    ("labels-wrong-dtype", "RuntimeError: expected scalar type Long but found Float"),
    ("labels-wrong-dtype", "RuntimeError: Expected object of scalar type Long but got scalar type "
                           "Float for argument #2 'target' in call to _thnn_nll_loss_forward"),
    ("labels-wrong-dtype", "RuntimeError: result type Float can't be cast to the desired output "
                           "type Long"),
    ("labels-wrong-dtype", "RuntimeError: \"nll_loss_forward_reduce_cuda_kernel_2d_index\" not "
                           "implemented for 'Int'"),
    ("mask-values-exceed-classes", "IndexError: Target 255 is out of bounds."),
    ("mask-values-exceed-classes", "../aten/src/ATen/native/cuda/NLLLoss2d.cu:104: "
                                   "nll_loss2d_forward_kernel: block: [2,0,0], thread: [93,0,0] "
                                   "Assertion `cur_target >= 0 && cur_target < n_classes` failed."),
    ("loss-broadcast-shape", "ValueError: Target size (torch.Size([4, 1, 256, 256])) must be the "
                             "same as input size (torch.Size([4, 1, 252, 252]))"),
    ("loss-broadcast-shape", "/home/alice/seg/train.py:51: UserWarning: Using a target size "
                             "(torch.Size([4, 1, 256, 256])) that is different to the input size "
                             "(torch.Size([4, 1, 252, 252])). This will likely lead to incorrect "
                             "results due to broadcasting. Please ensure they have the same size."),
    ("segmentation-output-size", "RuntimeError: size mismatch (got input: [4, 3, 252, 252] , "
                                 "target: [4, 256, 256]"),
    ("segmentation-output-size", "RuntimeError: only batches of spatial targets supported (3D "
                                 "tensors) but got targets of size: : [8, 1, 128, 128]"),
]


def _catalog():
    return load_catalog()


def _ids(cases):
    return [f"{rid}-{n}" for n, (rid, _) in enumerate(cases)]


def test_every_recipe_here_exists():
    missing = [rid for rid in MINE if rid not in _catalog()]
    assert not missing, f"recipe files missing: {missing}"


@pytest.mark.parametrize("recipe_id,text", FIRST, ids=_ids(FIRST))
def test_realistic_message_ranks_its_recipe_first(recipe_id, text):
    matches = match_text(text)
    assert matches, f"nothing matched; expected {recipe_id}"
    ranking = [(m.recipe, m.score) for m in matches]
    assert matches[0].recipe == recipe_id, f"expected {recipe_id} first, got {ranking}"
    assert matches[0].score > 0


@pytest.mark.parametrize("text", UNRELATED)
def test_unrelated_error_matches_none_of_these_recipes(text):
    hits = [m.recipe for m in match_text(text) if m.recipe in MINE]
    assert hits == [], f"{text!r} wrongly matched {hits}"


@pytest.mark.parametrize("owner,text", OWNED_ELSEWHERE, ids=_ids(OWNED_ELSEWHERE))
def test_problems_owned_by_other_recipes_are_not_claimed(owner, text):
    matches = match_text(text)
    if owner in _catalog():
        assert matches and matches[0].recipe == owner, [(m.recipe, m.score) for m in matches]
    assert not matches or matches[0].recipe not in MINE


def test_every_recipe_here_has_several_wordings():
    counts = {rid: 0 for rid in MINE}
    for rid, _ in FIRST:
        counts[rid] += 1
    thin = {rid: n for rid, n in counts.items() if _catalog()[rid].patterns and n < 3}
    assert not thin, f"fewer than 3 realistic messages: {thin}"


def test_every_pattern_is_exercised_by_a_message():
    """A pattern no realistic message needs is dead weight (or a typo that matches nothing)."""
    by_recipe: dict[str, list[str]] = {}
    for rid, text in FIRST:
        by_recipe.setdefault(rid, []).append(text)
    unused = []
    for rid in MINE:
        for pattern in _catalog()[rid].compiled:
            if not any(pattern.search(t) for t in by_recipe.get(rid, [])):
                unused.append((rid, pattern.pattern))
    assert not unused, f"patterns no message exercises: {unused}"


_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*]\)[+*{]")


def test_patterns_stay_linear():
    """No nested quantifiers such as (a+)+ (catastrophic backtracking on long logs)."""
    risky = [(rid, p) for rid in MINE for p in _catalog()[rid].patterns
             if _NESTED_QUANTIFIER.search(p)]
    assert not risky, risky


def test_patterns_survive_a_long_unrelated_log():
    """A 400 KB log full of near-misses still matches nothing of ours (and finishes)."""
    block = ("Traceback (most recent call last):\n  File \"/home/alice/segment_anything/x.py\", "
             "line 1, in set_image\n    image_encoder(x)\nValueError: loss: 0.5 accuracy "
             "stuck? no. IoU: 0.9 No module named 'timmy' HTTP Error 404 sam_vit_h.txt\n")
    text = block * (400_000 // len(block))
    assert [m.recipe for m in match_text(text) if m.recipe in MINE] == []


def test_sam_oom_outranks_generic_oom_only_with_sam_context():
    plain = match_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.")
    assert plain[0].recipe == "cuda-oom"
    assert "sam-oom" not in [m.recipe for m in plain]
    sam = [m.recipe for m in match_text(SAM_ENCODER_OOM)]
    assert sam[0] == "sam-oom" and "cuda-oom" in sam


def test_device_and_dtype_wordings_are_told_apart():
    """The same 'Input type (...) and weight type (...)' sentence means device or dtype."""
    cases = {
        "(torch.cuda.FloatTensor) and weight type (torch.cuda.HalfTensor)": "dtype-mismatch",
        "(torch.FloatTensor) and weight type (torch.DoubleTensor)": "dtype-mismatch",
        "(torch.FloatTensor) and weight type (torch.cuda.FloatTensor)": "device-mismatch",
        "(torch.cuda.FloatTensor) and weight type (torch.FloatTensor)": "device-mismatch",
        "(CUDABFloat16Type) and weight type (CPUBFloat16Type)": "device-mismatch",
        "(CUDABFloat16Type) and weight type (torch.cuda.HalfTensor)": "dtype-mismatch",
    }
    for fragment, expected in cases.items():
        got = [m.recipe for m in match_text(f"RuntimeError: Input type {fragment} should be the "
                                            "same")]
        assert got and got[0] == expected, (fragment, got)
        other = {"dtype-mismatch", "device-mismatch"} - {expected}
        assert not other & set(got), (fragment, got)


def test_a_logged_warning_does_not_outrank_the_error_that_ended_the_run():
    log = ("2024/05/02 10:41:07 - mmengine - WARNING - The model and loaded state dict do not "
           "match exactly\n\nunexpected key in source state_dict: fc.weight, fc.bias\n\n"
           "Epoch(train) [1][ 10/500]  loss: 2.3012\n"
           + tb("tools/train.py:121:<module>:main()",
                "/opt/conda/lib/python3.8/site-packages/mmengine/runner/runner.py:1777:train:"
                "model = self.train_loop.run()",
                error="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.20 GiB. "
                      "GPU 0 has a total capacity of 10.76 GiB of which 312.00 MiB is free."))
    ranked = [m.recipe for m in match_text(log)]
    assert ranked[0] == "cuda-oom", ranked
    assert "state-dict-mismatch" in ranked
