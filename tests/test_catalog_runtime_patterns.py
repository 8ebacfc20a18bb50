"""Error-text patterns of the recipes added for messages `cvdoctor explain` used to miss or send to
the wrong recipe (found by an audit): safetensors headers, YOLOv5 pickles outside their repository,
default_collate size mismatches, torch.distributed without a process group, the NumPy 1.x/2.x
ABI, backward on a non-scalar loss, numpy() on a GPU tensor, a GPU that refuses a context, and
cuDNN's NOT_SUPPORTED / EXECUTION_FAILED (which gpu-probe-failed, whose fix is about the library
path, used to claim).

Messages here are not copied from tests/corpus/: they come from real runs on this machine where
it can make them (torch 2.x collate, backward, torch.distributed and unpickling tracebacks,
safetensors 0.8 headers) and otherwise from each library's wording in its own source (other
paths, devices, sizes and prefixes than any corpus entry).
"""
from __future__ import annotations


import pytest

from cvdoctor.catalog import match_text
from pattern_tables import pattern_table_tests

MINE = (
    "safetensors-header-invalid", "yolov5-checkpoint-needs-repo", "collate-unequal-sizes",
    "dist-not-initialized", "numpy-abi-mismatch", "backward-non-scalar", "numpy-on-gpu-tensor",
    "gpu-busy-unavailable", "cudnn-not-supported", "cudnn-execution-failed",
)
PY = "/home/kim/.venv/lib/python3.12/site-packages"
CUDA_TAIL = ("\nCUDA kernel errors might be asynchronously reported at some other API call, so the "
             "stacktrace below might be incorrect.\nFor debugging consider passing "
             "CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side "
             "assertions.")

FIRST = [
    # --- safetensors-header-invalid (safetensors 0.8 wordings from a real run; older CamelCase)
    ("safetensors-header-invalid",
     f'  File "{PY}/safetensors/torch.py", line 338, in load_file\n'
     '    with safe_open(filename, framework="pt", device=device) as f:\n'
     "safetensors_rust.SafetensorError: Error while deserializing header: header too large"),
    ("safetensors-header-invalid", "safetensors._safetensors_rust.SafetensorError: Error while "
     "deserializing header: incomplete metadata, file not fully covered"),
    ("safetensors-header-invalid", "SafetensorError: Error while deserializing header: header too "
     "small"),
    ("safetensors-header-invalid", "safetensors_rust.SafetensorError: Error while deserializing "
     "header: invalid header length"),
    ("safetensors-header-invalid", "Exception: Error while deserializing header: HeaderTooLarge"),
    ("safetensors-header-invalid", "[ERROR] loading weights/vit_b.safetensors failed: Error while "
     "deserializing header: MetadataIncompleteBuffer"),
    ("safetensors-header-invalid", "safetensors_rust.SafetensorError: Error while deserializing "
     "header: HeaderTooSmall"),
    ("safetensors-header-invalid", "SafetensorError: Error while deserializing header: "
     "InvalidHeaderLength"),
    # --- yolov5-checkpoint-needs-repo (the traceback is from a real unpickling here)
    ("yolov5-checkpoint-needs-repo",
     "Traceback (most recent call last):\n"
     '  File "/srv/app/infer.py", line 9, in <module>\n'
     "    ckpt = torch.load('weights/best.pt', map_location='cpu', weights_only=False)\n"
     f'  File "{PY}/torch/serialization.py", line 1615, in load\n'
     "    return _load(\n"
     f'  File "{PY}/torch/serialization.py", line 2241, in _load\n'
     "    result = unpickler.load()\n"
     f'  File "{PY}/torch/serialization.py", line 2230, in find_class\n'
     "    return super().find_class(mod_name, name)\n"
     "ModuleNotFoundError: No module named 'models'"),
    ("yolov5-checkpoint-needs-repo", "ModuleNotFoundError: No module named 'models'\n"
     "  (while loading yolov5m_custom.pt with torch.load)"),
    ("yolov5-checkpoint-needs-repo", "ModuleNotFoundError: No module named 'models.common'"),
    ("yolov5-checkpoint-needs-repo", "TypeError: ERROR ❌️ runs/train/exp3/weights/last.pt appears "
     "to be an Ultralytics YOLOv5 model originally trained with https://github.com/ultralytics/"
     "yolov5.\nThis model is NOT forwards compatible with YOLOv8 at https://github.com/"
     "ultralytics/ultralytics."),
    ("yolov5-checkpoint-needs-repo",
     f'  File "{PY}/yolov5/models/experimental.py", line 79, in attempt_load\n'
     "    ckpt = torch.load(attempt_download(w), map_location='cpu')\n"
     "ModuleNotFoundError: No module named 'models.experimental'"),
    # --- collate-unequal-sizes (torch 2.x default_collate, real run)
    ("collate-unequal-sizes",
     f'  File "{PY}/torch/utils/data/_utils/collate.py", line 275, in collate_tensor_fn\n'
     "    return torch.stack(batch, 0, out=out)\n"
     "RuntimeError: stack expects each tensor to be equal size, but got [3, 224, 224] at entry "
     "0 and [3, 256, 256] at entry 1"),
    ("collate-unequal-sizes", "RuntimeError: Caught RuntimeError in DataLoader worker process 1.\n"
     "Original Traceback (most recent call last):\n"
     f'  File "{PY}/torch/utils/data/_utils/collate.py", line 275, in collate_tensor_fn\n'
     "    return torch.stack(batch, 0, out=out)\n"
     "RuntimeError: stack expects each tensor to be equal size, but got [7, 4] at entry 0 and "
     "[2, 4] at entry 3"),
    ("collate-unequal-sizes", "RuntimeError: stack expects each tensor to be equal size, but got "
     "[512, 683] at entry 0 and [512, 512] at entry 2"),
    ("collate-unequal-sizes", "stack expects each tensor to be equal size"),
    # --- dist-not-initialized (torch 2.x ValueError from a real run; older RuntimeError/assert)
    ("dist-not-initialized",
     f'  File "{PY}/torch/utils/data/distributed.py", line 78, in __init__\n'
     "    num_replicas = dist.get_world_size()\n"
     f'  File "{PY}/torch/distributed/distributed_c10d.py", line 1299, in _get_default_group\n'
     "    raise ValueError(\n"
     "ValueError: Default process group has not been initialized, please make sure to call "
     "init_process_group."),
    ("dist-not-initialized", "[rank0]: RuntimeError: Default process group has not been "
     "initialized, please make sure to call init_process_group."),
    ("dist-not-initialized", "AssertionError: Default process group is not initialized"),
    # --- numpy-abi-mismatch
    ("numpy-abi-mismatch", "\nA module that was compiled using NumPy 1.x cannot be run in\n"
     "NumPy 2.1.3 as it may crash. To support both 1.x and 2.x\nversions of NumPy, modules must "
     "be compiled with NumPy 2.0."),
    ("numpy-abi-mismatch", f"{PY}/torchvision/io/image.py:13: UserWarning: Failed to initialize "
     "NumPy: _ARRAY_API not found (Triggered internally at /pytorch/torch/csrc/utils/"
     "tensor_numpy.cpp:84.)"),
    ("numpy-abi-mismatch", "AttributeError: _ARRAY_API not found"),
    ("numpy-abi-mismatch", "UserWarning: Failed to initialize NumPy: module compiled against ABI "
     "version 0x1000009 but this version of numpy is 0x2000000"),
    ("numpy-abi-mismatch", "    arr = torch.from_numpy(frame)\nRuntimeError: Numpy is not "
     "available"),
    # --- backward-non-scalar (torch 2.x, real run; complex wording from torch/autograd)
    ("backward-non-scalar",
     f'  File "{PY}/torch/autograd/__init__.py", line 208, in _make_grads\n'
     "    raise RuntimeError(\n"
     "RuntimeError: grad can be implicitly created only for scalar outputs"),
    ("backward-non-scalar", "RuntimeError: grad can be implicitly created only for real scalar "
     "outputs but got torch.complex64"),
    ("backward-non-scalar", "model.gradients: backward raised TypeError: the loss must be a "
     "scalar tensor, got Tensor(16,)"),
    # --- numpy-on-gpu-tensor (torch/csrc/utils/tensor_numpy.cpp wording)
    ("numpy-on-gpu-tensor", "    plt.imshow(pred_mask[0])\nTypeError: can't convert cuda:1 "
     "device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first."),
    ("numpy-on-gpu-tensor", "TypeError: can't convert xpu:0 device type tensor to numpy. Use "
     "Tensor.cpu() to copy the tensor to host memory first."),
    ("numpy-on-gpu-tensor", "TypeError: can't convert CUDA tensor to numpy. Use Tensor.cpu() to "
     "copy the tensor to host memory first."),
    # --- gpu-busy-unavailable
    ("gpu-busy-unavailable", "    model = model.to('cuda:0')\nRuntimeError: CUDA error: "
     "CUDA-capable device(s) is/are busy or unavailable" + CUDA_TAIL),
    ("gpu-busy-unavailable", "RuntimeError: cuda runtime error (46) : all CUDA-capable devices "
     "are busy or unavailable at /pytorch/aten/src/THC/THCGeneral.cpp:50"),
    ("gpu-busy-unavailable", "torch.AcceleratorError: CUDA error: cudaErrorDevicesUnavailable"),
    # --- cudnn-not-supported
    ("cudnn-not-supported", f'  File "{PY}/torch/nn/modules/conv.py", line 554, in '
     "_conv_forward\n    return F.conv3d(\nRuntimeError: cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. "
     "This error may appear if you passed in a non-contiguous input."),
    ("cudnn-not-supported", "RuntimeError: CUDNN_STATUS_NOT_SUPPORTED"),
    ("cudnn-not-supported", "This error may appear if you passed in a non-contiguous input."),
    # --- cudnn-execution-failed
    ("cudnn-execution-failed", "/pytorch/aten/src/ATen/native/cuda/Loss.cu:250: "
     "nll_loss_forward_reduce_cuda_kernel_2d: block: [0,0,0], thread: [5,0,0] Assertion `t >= 0 "
     "&& t < n_classes` failed.\n"
     f'  File "{PY}/torch/nn/modules/batchnorm.py", line 193, in forward\n'
     "    return F.batch_norm(\nRuntimeError: cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
    ("cudnn-execution-failed", "RuntimeError: CUDNN_STATUS_EXECUTION_FAILED"),
    # --- wordings added to existing recipes
    ("dtype-mismatch", f'  File "{PY}/torch/nn/modules/linear.py", line 125, in forward\n'
     "    return F.linear(input, self.weight, self.bias)\nRuntimeError: expected mat1 and mat2 to "
     "have the same dtype, but got: float != c10::BFloat16"),
    ("dtype-mismatch", "RuntimeError: expected mat1 and mat2 to have the same dtype, but got: "
     "c10::Half != float"),
    ("yolo-dataset-path", "FileNotFoundError: val: Error loading data from "
     "/home/kim/data/parts/valid/images\nSee https://docs.ultralytics.com/datasets for dataset "
     "formatting guidance."),
    ("yolo-dataset-path", "Exception: train: Error loading data from C:\\yolo\\datasets\\cones\\"
     "train.txt: train: C:\\yolo\\datasets\\cones\\train.txt does not exist\nSee "
     "https://github.com/ultralytics/yolov5/wiki/Train-Custom-Data"),
    ("gpu-probe-failed", "RuntimeError: cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"),
    ("gpu-probe-failed", "RuntimeError: cuDNN error: CUDNN_STATUS_ARCH_MISMATCH"),
]

# Must match none of the recipes above.
UNRELATED = [
    "ModuleNotFoundError: No module named 'models'",
    "Traceback (most recent call last):\n  File \"manage.py\", line 8, in <module>\n"
    "    from models import Order\nModuleNotFoundError: No module named 'models'",
    "ImportError: No module named 'modelscope'",
    "RuntimeError: Error while deserializing a protobuf message",
    "ValueError: Process group 'workers' has not been created yet",
    "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 3.00 GiB for an array with "
    "shape (1024, 1024, 768) and data type float32",
    "TypeError: can't convert np.ndarray of type numpy.object_. The only supported types are: "
    "float64, float32, float16, complex64, complex128, int64, int32, int16, int8, uint8, and bool.",
    "ValueError: all the input array dimensions except for the concatenation axis must match "
    "exactly",
    "RuntimeError: CUDA error: out of memory",
    "OSError: [Errno 16] Device or resource busy: '/mnt/data'",
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    "KeyError: 'state_dict'",
    "Exception: Error loading data from the cache server",
    "pandas.errors.ParserError: Error loading data from sales.csv: line 3 has 5 fields",
]

# Messages other recipes own: none of ours may take them.
OWNED_ELSEWHERE = [
    ("image-mode-not-rgb", "RuntimeError: stack expects each tensor to be equal size, but got "
     "[3, 256, 256] at entry 0 and [1, 256, 256] at entry 5"),
    ("numpy-requires-grad", "RuntimeError: Can't call numpy() on Tensor that requires grad. Use "
     "tensor.detach().numpy() instead."),
    ("checkpoint-pickle-foreign-code", "AttributeError: Can't get attribute 'Net' on <module "
     "'__main__' from 'export.py'>"),
    ("gpu-probe-failed", "RuntimeError: cuDNN error: CUDNN_STATUS_NOT_INITIALIZED"),
    ("checkpoint-not-a-checkpoint", "_pickle.UnpicklingError: invalid load key, 'v'."),
]


globals().update(pattern_table_tests(MINE, FIRST, UNRELATED, OWNED_ELSEWHERE, min_wordings=2))


def test_cudnn_statuses_with_their_own_fix_leave_the_library_path_recipe():
    """NOT_SUPPORTED and EXECUTION_FAILED are not about which cuDNN was loaded: the recipe whose
    fix is LD_LIBRARY_PATH must not be offered for them at all."""
    for status in ("NOT_SUPPORTED", "EXECUTION_FAILED"):
        recipes = [m.recipe for m in match_text(f"RuntimeError: cuDNN error: CUDNN_STATUS_{status}")]
        assert "gpu-probe-failed" not in recipes, (status, recipes)


def test_the_old_busy_wording_is_a_device_problem_not_memory():
    matches = match_text("RuntimeError: CUDA error: all CUDA-capable devices are busy or "
                         "unavailable")
    assert [m.recipe for m in matches] == ["gpu-busy-unavailable"]


@pytest.mark.parametrize("text", [
    "Exception: Error loading data from the cache server",
    "pandas.errors.ParserError: Error loading data from sales.csv: line 3 has 5 fields",
])
def test_error_loading_data_is_a_dataset_path_only_with_a_split_or_a_path(text):
    assert match_text(text) == []
