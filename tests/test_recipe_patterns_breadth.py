"""Error-text patterns added for issue 11 ("explain that knows 95% of real errors"): the new
recipes (distributed, autograd, platform, yolo-sam, ...) and the older or other wordings added to
existing recipes. Realistic messages rank their recipe first; unrelated errors match none of the
new recipes.

Messages here are not copied from tests/corpus/ (that corpus measures the catalog, it must not
be what the patterns were written against). They come from real runs on this machine where it
can produce them (torch 2.x wordings of backward twice, numpy(), GradScaler, TCPStore, torchrun,
cross_entropy, load_state_dict) and otherwise from each library's wording in its own source and
release history (old PyTorch THC/THNN messages, NCCL, ROCm, ultralytics, SAM, detectron2), with
other paths, numbers and prefixes than any corpus entry.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cvdoctor.catalog import load_catalog, match_text

LOGS = Path(__file__).resolve().parent / "run_logs"

# The recipes this table owns completely: every pattern of theirs must be exercised here.
MINE = (
    "ddp-unused-parameters", "nccl-timeout", "nccl-system-error", "dist-port-in-use",
    "dist-rendezvous-timeout", "torchrun-child-failed", "backward-twice",
    "gradscaler-no-inf-checks", "numpy-requires-grad",
    "rocm-arch-unsupported", "timm-unknown-model", "cpu-illegal-instruction",
    "segmentation-fault", "process-killed-oom", "ultralytics-amp-check",
    "ultralytics-nms-time-limit", "sam-input-format", "hub-ssl-certificate",
    "target-not-class-indices", "torch-save-failed", "data-path-missing",
    "dataloader-unpicklable", "cuda-async-error", "scheduler-before-optimizer",
)

# Patterns issue 11 added to recipes other tables own: (recipe, pattern) must each be exercised.
ADDED = {
    "tensor-does-not-require-grad": [r"element \d+ of tensors does not require grad"],
    "checkpoint-not-a-checkpoint": [r"\binvalid load key, ", "WeightsUnpickler error: Unsupported operand"],
    "checkpoint-load-failed": ["(?:^|UnpicklingError: )Weights only load failed",
                               "WeightsUnpickler error: Unsupported (?:class|global)"],
    "torch-import-failed": [r"lib(?:torch\w*|c10\w*|shm)", "lib(?:cudart|curand",
                            r"Error loading \\?"],
    "shm-docker-ipc": ["unable to open shared memory object", "Bus error\\. It is possible",
                       "is killed by signal:\\s+Bus\\s+error", "^\\s*Bus error",
                       "out of shared\\s+memory"],
    "torchvision-torch-mismatch": ["compiled with different", "Could not find the) operator",
                                   "Failed to load image Python extension"],
    "target-out-of-bounds": ["(?:is )?out of bounds"],
    "checkpoint-cuda-saved": ["Attempting to ?deserialize"],
    "hub-http-403": ["403: rate limit exceeded", "40[13] Client Error\\b[^", "torch\\.hub|"],
    "hub-offline-no-cache": ["We couldn't connect"],
    "hub-cache-unwritable": ["(?:/\\.cache|", "\\.torch[\\\\/]models"],
    "gpu-probe-failed": ["CUDNN_STATUS_(?:INTERNAL_ERROR"],
    "gpu-arch-unsupported": ["THCudaCheck FAIL", "CUDA error: invalid device function"],
    "resources-open-files-limit": ["Too many (?:open files|files open)"],
    "yolo-class-out-of-range": [r"Label class \d+(?:\.\d+)? exceeds nc"],
    "unet-shape-mismatch": [r"Sizes of tensors must match except in dimension \d+",
                            "inconsistent tensor sizes"],
    # default_collate inside a worker: the shared-memory batch cannot grow
    "collate-unequal-sizes": ["Trying to resize storage"],
}


def tb(*frames: str, error: str, py: str = "/usr/local/lib/python3.10/site-packages") -> str:
    """A Python traceback; each frame is 'file:line:func:code' ($PY = site-packages)."""
    lines = ["Traceback (most recent call last):"]
    for frame in frames:
        path, line, func, code = frame.split(":", 3)
        lines += [f'  File "{path.replace("$PY", py)}", line {line}, in {func}', f"    {code}"]
    return "\n".join(lines + [error])


def ranked(text: str) -> list[tuple[str, float]]:
    return [(m.recipe, m.score) for m in match_text(text)]


# What torch 2.x appends to every CUDA error it raises.
CUDA_TAIL = ("\nCUDA kernel errors might be asynchronously reported at some other API call, so the "
             "stacktrace below might be incorrect.\nFor debugging consider passing "
             "CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side "
             "assertions.")


FIRST = [
    # --- ddp-unused-parameters
    ("ddp-unused-parameters", "[rank0]: RuntimeError: Expected to have finished reduction in the "
     "prior iteration before starting a new one. This error indicates that your module has "
     "parameters that were not used in producing loss. You can enable unused parameter detection "
     "by passing the keyword argument `find_unused_parameters=True` to "
     "`torch.nn.parallel.DistributedDataParallel`, and by\n[rank0]: making sure all `forward` "
     "function outputs participate in calculating loss.\n[rank0]: Parameters which did not "
     "receive grad for rank 0: aux_head.fc.bias, aux_head.fc.weight"),
    ("ddp-unused-parameters", "RuntimeError: Expected to have finished reduction in the prior "
     "iteration before starting a new one. This error indicates that your module has parameters "
     "that were not used in producing its output (the return value of `forward`)."),
    ("ddp-unused-parameters", "lightning.fabric.utilities.exceptions.MisconfigurationException? "
     "no:\nRuntimeError: It looks like your LightningModule has parameters that were not used in "
     "producing the loss returned by training_step. If this is intentional, you must enable the "
     "detection of unused parameters in DDP, either by setting the string value "
     "`strategy='ddp_find_unused_parameters_true'`"),
    # --- nccl-timeout
    ("nccl-timeout", "[rank3]:[E1203 11:02:17.442918101 ProcessGroupNCCL.cpp:632] [Rank 3] "
     "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1203, OpType=ALLGATHER, "
     "NumelIn=1, NumelOut=4, Timeout(ms)=600000) ran for 600081 milliseconds before timing out."),
    ("nccl-timeout", "[E ProcessGroupNCCL.cpp:474] [Rank 0] Watchdog caught collective operation "
     "timeout: WorkNCCL(SeqNum=52, OpType=BROADCAST, Timeout(ms)=1800000) ran for 1800538 "
     "milliseconds before timing out.\n[E ProcessGroupNCCL.cpp:488] Some NCCL operations have "
     "failed or timed out. Due to the asynchronous nature of CUDA kernels, subsequent GPU "
     "operations might run on corrupted/incomplete data."),
    ("nccl-timeout", "[rank2]:[E1203 11:02:17.5 ProcessGroupNCCL.cpp:1790] [PG ID 0 PG GUID "
     "0(default_pg) Rank 2] Exception (either an error or timeout) detected by watchdog at work: "
     "17, last enqueued NCCL work: 18, last completed NCCL work: 16."),
    ("nccl-timeout", "RuntimeError: NCCL communicator was aborted on rank 1. Original reason for "
     "failure was: [Rank 1] Watchdog caught collective operation timeout"),
    # --- nccl-system-error
    ("nccl-system-error", "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/"
     "distributed/c10d/ProcessGroupNCCL.cpp:1691, unhandled system error (run with NCCL_DEBUG=INFO "
     "for details), NCCL version 2.19.3\nncclSystemError: System call (e.g. socket, malloc) or "
     "external library call failed or device error."),
    ("nccl-system-error", "RuntimeError: NCCL error in: /opt/conda/conda-bld/pytorch_1639180594101/"
     "work/torch/lib/c10d/ProcessGroupNCCL.cpp:957, unhandled system error, NCCL version 21.0.3"),
    ("nccl-system-error", "RuntimeError: NCCL Error 2: unhandled system error"),
    ("nccl-system-error", "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/"
     "distributed/c10d/NCCLUtils.hpp:219, internal error - please report this issue to the NCCL "
     "developers, NCCL version 2.18.1\nncclInternalError: Internal check failed."),
    ("nccl-system-error", "RuntimeError: NCCL error in: ../torch/lib/c10d/ProcessGroupNCCL.cpp:825, "
     "unhandled cuda error, NCCL version 2.7.8\nncclUnhandledCudaError: Call to CUDA function "
     "failed."),
    ("nccl-system-error", "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL."
     "cpp:1333, remote process exited or there was a network error, NCCL version 2.20.5\n"
     "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting "
     "prematurely."),
    # --- dist-port-in-use (the first two are this machine's torch 2.x TCPStore)
    ("dist-port-in-use", "torch.distributed.DistNetworkError: The server socket has failed to "
     "listen on any local network address. port: 29517, useIpv6: false, code: -98, name: "
     "EADDRINUSE, message: address already in use"),
    ("dist-port-in-use", "RuntimeError: The server socket has failed to listen on any local network "
     "address. The server socket has failed to bind to [::]:29501 (errno: 98 - Address already in "
     "use). The server socket has failed to bind to 0.0.0.0:29501 (errno: 98 - Address already in "
     "use)."),
    ("dist-port-in-use", "torch.distributed.DistNetworkError: The server socket has failed to "
     "listen on any local network\naddress. The server socket has failed to bind to [::]:12355 "
     "(errno: 98 - Address\nalready in use)."),
    ("dist-port-in-use", "[W socket.cpp:436] [c10d] The server socket cannot be initialized on "
     "[::]:29500 (errno: 98 - Address already in use).\nRuntimeError: TCPStore init failed: "
     "Address already in use"),
    # --- dist-rendezvous-timeout
    # rank 0's side: the store waited for the others (lewandofskee/MobileMamba#15)
    ("dist-rendezvous-timeout", "torch.distributed.DistStoreError: Timed out after 901 seconds "
     "waiting for clients. 1/2 clients joined."),
    ("dist-rendezvous-timeout", "torch.distributed.DistNetworkError: The client socket has timed "
     "out after 2000ms while trying to connect to (127.0.0.1, 29599)."),
    ("dist-rendezvous-timeout", "[E1203 03:21:38.356 TCPStore.cpp:328] [c10d] TCP client failed to "
     "connect/validate to host 10.1.2.3:29400 - timed out (try=1, timeout=600000ms)"),
    ("dist-rendezvous-timeout", "torch.distributed.elastic.rendezvous.api.RendezvousConnectionError: "
     "The connection to the C10d store has failed. See inner exception for details."),
    ("dist-rendezvous-timeout", "RuntimeError: Timed out initializing process group in store based "
     "barrier on rank: 0, for key: store_based_barrier_key:1 (world_size=8, worker_count=7, "
     "timeout=0:30:00)"),
    ("dist-rendezvous-timeout", tb(
        "train.py:40:main:dist.init_process_group('nccl', init_method=args.dist_url)",
        "$PY/torch/distributed/distributed_c10d.py:500:init_process_group:store, rank, world_size "
        "= next(rendezvous_iterator)",
        "$PY/torch/distributed/rendezvous.py:153:_tcp_rendezvous_handler:store = "
        "_create_c10d_store(result.hostname, result.port, rank, world_size, timeout)",
        error="RuntimeError: connect() timed out. Original timeout was 1800000 ms.")),
    ("dist-rendezvous-timeout", tb(
        "main.py:22:<module>:dist.init_process_group('gloo', init_method='file:///tmp/sharedfile', "
        "rank=r, world_size=2)",
        "$PY/torch/distributed/distributed_c10d.py:354:init_process_group:default_pg = "
        "_new_process_group_helper(",
        error="RuntimeError: Wait timeout")),
    # --- torchrun-child-failed (real torchrun runs on this machine, and the older log line)
    ("torchrun-child-failed", (LOGS / "torchrun_sigkill.log").read_text()),
    ("torchrun-child-failed", "ERROR:torch.distributed.elastic.multiprocessing.api:failed "
     "(exitcode: -11) local_rank: 2 (pid: 40121) of binary: /opt/conda/bin/python3"),
    ("torchrun-child-failed", "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
     "============================================================\nmain.py FAILED\n"
     "------------------------------------------------------------\nFailures:\n  <NO_OTHER_FAILURES>"
     "\n------------------------------------------------------------\nRoot Cause (first observed "
     "failure):\n[0]:\n  time      : 2024-02-11_10:01:44\n  host      : gpu-07\n  rank      : 0 "
     "(local_rank: 0)\n  exitcode  : 1 (pid: 7731)\n  error_file: <N/A>\n  traceback : To enable "
     "traceback see: https://pytorch.org/docs/stable/elastic/errors.html"),
    # --- backward-twice (the first: this machine's torch)
    ("backward-twice", "RuntimeError: Trying to backward through the graph a second time (or "
     "directly access saved tensors after they have already been freed). Saved intermediate values "
     "of the graph are freed when you call .backward() or autograd.grad(). Specify "
     "retain_graph=True if you need to backward through the graph a second time or if you need to "
     "access saved tensors after calling backward."),
    ("backward-twice", tb("gan.py:88:train:g_loss.backward()",
                          "$PY/torch/_tensor.py:487:backward:torch.autograd.backward(",
                          error="RuntimeError: Trying to backward through the graph a second time, "
                                "but the saved intermediate results have already been freed. "
                                "Specify retain_graph=True when calling backward the first time.")),
    ("backward-twice", "RuntimeError: Trying to backward through the graph a second time, but the "
     "buffers have already been freed. Specify retain_graph=True when calling backward the first "
     "time."),
    # --- gradscaler-no-inf-checks (the first: this machine's torch, CPU GradScaler)
    ("gradscaler-no-inf-checks", tb(
        "train.py:61:train_one_epoch:scaler.step(optimizer)",
        "$PY/torch/amp/grad_scaler.py:451:step:assert len(optimizer_state[\"found_inf_per_device\"])"
        " > 0, \"No inf checks were recorded for this optimizer.\"",
        error="AssertionError: No inf checks were recorded for this optimizer.")),
    ("gradscaler-no-inf-checks", "AssertionError: No inf checks were recorded prior to update."),
    ("gradscaler-no-inf-checks", "AssertionError: Attempted step but _scale is None.  This may "
     "indicate your script did not use scaler.scale(loss or outputs) earlier in the iteration."),
    # --- numpy-requires-grad
    ("numpy-requires-grad", "RuntimeError: Can't call numpy() on Tensor that requires grad. Use "
     "tensor.detach().numpy() instead."),
    ("numpy-requires-grad", tb("eval.py:30:plot:plt.imshow(pred[0])",
                               "$PY/matplotlib/cbook/__init__.py:1335:_to_unmasked_float_array:"
                               "return np.asarray(x, float)",
                               error="RuntimeError: Can't call numpy() on Variable that requires "
                                     "grad. Use var.detach().numpy() instead.")),
    # --- rocm-arch-unsupported
    ("rocm-arch-unsupported", "\"hipErrorNoBinaryForGpu: Unable to find code object for all "
     "current devices!\"\nAborted (core dumped)"),
    ("rocm-arch-unsupported", "hipErrorNoBinaryForGpu: Couldn't find binary for current devices!"),
    ("rocm-arch-unsupported", "RuntimeError: HIP error: invalid device function\nHIP kernel errors "
     "might be asynchronously reported at some other API call, so the stacktrace below might be "
     "incorrect.\nFor debugging consider passing AMD_SERIALIZE_KERNEL=3"),
    ("rocm-arch-unsupported", "rocBLAS error: Cannot read /opt/rocm/lib/rocblas/library/"
     "TensileLibrary.dat: No such file or directory for GPU arch : gfx1032"),
    ("rocm-arch-unsupported", ":0:rocdevice.cpp            :2614: 1234567890 us: [pid:9 tid:0x7f] "
     "Callback: Queue 0x7f00 aborting with error : HSA_STATUS_ERROR_INVALID_ISA: The instruction "
     "set architecture is invalid. code: 0x100f"),
    # --- timm-unknown-model
    ("timm-unknown-model", tb("train.py:70:main:model = timm.create_model(args.model, "
                              "pretrained=False, num_classes=100)",
                              "$PY/timm/models/_factory.py:117:create_model:raise "
                              "RuntimeError('Unknown model (%s)' % model_name)",
                              error="RuntimeError: Unknown model (convnextv2_atto.fcmae)")),
    ("timm-unknown-model", "RuntimeError: Unknown model (vit_small_patch16_224_dino)"),
    ("timm-unknown-model", "RuntimeError: Unknown pretrained tag: in22k_ft_in1k"),
    # --- cpu-illegal-instruction
    ("cpu-illegal-instruction", "$ python -c 'import torch'\nIllegal instruction (core dumped)"),
    ("cpu-illegal-instruction", "zsh: illegal hardware instruction  python3 train.py"),
    ("cpu-illegal-instruction", "Thread 1 \"python3\" received signal SIGILL, Illegal instruction.\n"
     "0x0000ffffe2b1c8a0 in mlas_sgemm_kernel_neon () from /usr/lib/python3/dist-packages/torch/"
     "lib/libtorch_cpu.so"),
    # --- segmentation-fault
    ("segmentation-fault", "Fatal Python error: Segmentation fault\n\nThread 0x00007f3a (most recent "
     "call first):\n  File \"/usr/lib/python3.10/threading.py\", line 320 in wait\n\nCurrent "
     "thread 0x00007f3b (most recent call first):\n  File \"/app/data.py\", line 41 in "
     "__getitem__\nSegmentation fault (core dumped)"),
    ("segmentation-fault", "Thread 1 \"python\" received signal SIGSEGV, Segmentation fault.\n"
     "0x00007fffd3e1a2b4 in c10::TensorImpl::~TensorImpl() () from .../libc10.so"),
    ("segmentation-fault", "fish: Job 1, 'python infer.py' terminated by signal SIGSEGV (Address "
     "boundary error)"),
    # --- process-killed-oom
    ("process-killed-oom", "Epoch 4:  61%|██████    | 611/1000 [03:02<01:56,  3.35it/s, loss=0.412]"
     "\nKilled"),
    ("process-killed-oom", "[1832551.201] Out of memory: Killed process 912044 (python) "
     "total-vm:71203420kB, anon-rss:60112312kB, file-rss:0kB"),
    ("process-killed-oom", "Memory cgroup out of memory: Killed process 4311 (pt_main_thread) "
     "total-vm:40112kB"),
    ("process-killed-oom", "subprocess.CalledProcessError: Command '['python', 'train.py']' returned "
     "non-zero exit status -9."),
    ("process-killed-oom", "trainer-1 exited with code 137"),
    ("process-killed-oom", "python invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), "
     "order=0, oom_score_adj=0"),
    ("process-killed-oom", "fish: Job 1, 'python train.py' terminated by signal SIGKILL (Forced "
     "quit)"),
    # --- ultralytics-amp-check
    ("ultralytics-amp-check", "AMP: running Automatic Mixed Precision (AMP) checks with YOLO11n...\n"
     "AMP: checks failed ❌. Anomalies were detected with AMP on your system that may lead to NaN "
     "losses or zero-mAP results, so AMP will be disabled during training."),
    ("ultralytics-amp-check", "AMP: checks failed ❌. AMP training on NVIDIA GeForce GTX 1650 GPU "
     "may cause NaN losses or zero-mAP results, so AMP will be disabled during training."),
    ("ultralytics-amp-check", "AMP checks failed ❌, disabling Automatic Mixed Precision. See "
     "https://github.com/ultralytics/yolov5/issues/7908"),
    # --- ultralytics-nms-time-limit
    ("ultralytics-nms-time-limit", "                 Class     Images  Instances      Box(P          "
     "R      mAP50  mAP50-95):  12%|█▏        | 3/25 [00:41<05:01, 13.71s/it]WARNING ⚠️ NMS time "
     "limit 3.600s exceeded"),
    ("ultralytics-nms-time-limit", "WARNING: NMS time limit 1.060s exceeded"),
    # --- sam-input-format
    ("sam-input-format", tb("app.py:33:segment:predictor.set_image(img)",
                            "$PY/segment_anything/predictor.py:60:set_image:"
                            "self.set_torch_image(input_image_torch, image.shape[:2])",
                            "$PY/torch/utils/_contextlib.py:115:decorate_context:return "
                            "func(*args, **kwargs)",
                            "$PY/segment_anything/predictor.py:80:set_torch_image:assert (",
                            error="AssertionError: set_torch_image input must be BCHW with long "
                                  "side 1024.")),
    ("sam-input-format", tb("C:\\proj\\sam_demo.py:9:<module>:predictor.set_image(r'C:\\imgs\\a.jpg')",
                            "C:\\proj\\segment_anything\\predictor.py:56:set_image:input_image = "
                            "self.transform.apply_image(image)",
                            "C:\\proj\\segment_anything\\utils\\transforms.py:31:apply_image:"
                            "target_size = self.get_preprocess_shape(image.shape[0], "
                            "image.shape[1], self.target_length)",
                            error="AttributeError: 'str' object has no attribute 'shape'")),
    ("sam-input-format", "SAM failed on photo.png: RuntimeError: The size of tensor a (4) must "
     "match the size of tensor b (3) at non-singleton dimension 1"),
    ("sam-input-format", "AssertionError: image_format must be in ['RGB', 'BGR'], is rgb."),
    # --- hub-ssl-certificate
    ("hub-ssl-certificate", "Downloading: \"https://download.pytorch.org/models/"
     "efficientnet_b0_rwightman-7f5810bc.pth\" to /home/bob/.cache/torch/hub/checkpoints/"
     "efficientnet_b0_rwightman-7f5810bc.pth\nurllib.error.URLError: <urlopen error [SSL: "
     "CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
     "certificate (_ssl.c:1006)>"),
    ("hub-ssl-certificate", "ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] "
     "certificate verify failed: self-signed certificate in certificate chain (_ssl.c:1000)"),
    ("hub-ssl-certificate", "requests.exceptions.SSLError: (MaxRetryError(\"HTTPSConnectionPool("
     "host='huggingface.co', port=443): Max retries exceeded with url: /timm/resnet50.a1_in1k/"
     "resolve/main/model.safetensors (Caused by SSLError(SSLCertVerificationError(1, '[SSL: "
     "CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired "
     "(_ssl.c:992)')))\"))"),
    # --- target-not-class-indices (the first three: this machine's torch)
    ("target-not-class-indices", "RuntimeError: 0D or 1D target tensor expected, multi-target not "
     "supported"),
    ("target-not-class-indices", "RuntimeError: Expected floating point type for target with class "
     "probabilities, got Long"),
    ("target-not-class-indices", "RuntimeError: multi-target not supported at /opt/conda/conda-bld/"
     "pytorch_1544174967633/work/aten/src/THNN/generic/ClassNLLCriterion.c:21"),
    ("target-not-class-indices", "RuntimeError: only batches of spatial targets supported "
     "(non-empty 3D tensors) but got targets of size: : [8, 1, 256, 256]"),
    # --- torch-save-failed
    ("torch-save-failed", tb("train.py:140:save:torch.save(state, path)",
                             "$PY/torch/serialization.py:862:save:_save(",
                             "$PY/torch/serialization.py:1131:_save:zip_file.write_record(name, "
                             "storage, num_bytes)",
                             error="RuntimeError: [enforce fail at inline_container.cc:858] . "
                                   "PytorchStreamWriter failed writing file data/12: file write "
                                   "failed")),
    ("torch-save-failed", tb("train.py:140:save:torch.save(state, 'runs/exp3/weights/last.pt')",
                             "$PY/torch/serialization.py:627:save:with _open_zipfile_writer(f) as "
                             "opened_zipfile:",
                             "$PY/torch/serialization.py:501:__init__:super().__init__(torch._C."
                             "PyTorchFileWriter(self.name))",
                             error="RuntimeError: File runs/exp3/weights/last.pt cannot be "
                                   "opened.")),
    ("torch-save-failed", tb("train.py:140:save:torch.save(model.state_dict(), out)",
                             "$PY/torch/serialization.py:441:save:_save(obj, opened_zipfile, "
                             "pickle_module, pickle_protocol)",
                             error="OSError: [Errno 28] No space left on device")),
    ("torch-save-failed", "RuntimeError: [enforce fail at inline_container.cc:626] . unexpected pos "
     "1216 vs 1110\nRuntimeError: PytorchStreamWriter failed writing central directory: file "
     "write failed"),
    ("torch-save-failed", "RuntimeError: write(): fd 7 failed with No space left on device"),
    # --- data-path-missing
    ("data-path-missing", tb("train.py:51:main:train_set = datasets.ImageFolder(args.train_dir, "
                             "transform=tf)",
                             "$PY/torchvision/datasets/folder.py:309:__init__:super().__init__(",
                             "$PY/torchvision/datasets/folder.py:144:__init__:classes, "
                             "class_to_idx = self.find_classes(self.root)",
                             "$PY/torchvision/datasets/folder.py:41:find_classes:classes = sorted("
                             "entry.name for entry in os.scandir(directory) if entry.is_dir())",
                             error="FileNotFoundError: [Errno 2] No such file or directory: "
                                   "'/path/to/imagenet/train'")),
    ("data-path-missing", tb("C:\\work\\cls\\train.py:20:<module>:ds = ImageFolder('data\\\\train')",
                             "C:\\Python310\\lib\\site-packages\\torchvision\\datasets\\folder.py:"
                             "40:find_classes:classes = sorted(entry.name for entry in "
                             "os.scandir(directory) if entry.is_dir())",
                             error="FileNotFoundError: [WinError 3] The system cannot find the path "
                                   "specified: 'data\\\\train'")),
    ("torchrun-child-failed", "[2024-06-01 10:12:03,511] torch.distributed.elastic.multiprocessing.api: "
     "[ERROR] failed (exitcode: -9) local_rank: 0 (pid: 811) of binary: /usr/bin/python3"),
    ("numpy-requires-grad", "RuntimeError: Can't call `numpy()` on Tensor that requires grad. Use "
     "`tensor.detach().numpy()` instead."),
    ("timm-unknown-model", "Unknown model (vit_base_patch14_reg4_dinov2)"),
    ("nccl-system-error", "torch.distributed.DistBackendError: NCCL error: unhandled system error "
     "(run with NCCL_DEBUG=INFO for details)"),
    ("dist-rendezvous-timeout", "[W1203 10:04:16.149509694 socket.cpp:752] [c10d] The client socket "
     "has failed to connect to [node-0.cluster]:29400 (errno: 110 - Connection timed out)."),
    ("torch-save-failed", "RuntimeError: [enforce fail at inline_container.cc:337] . "
     "PytorchStreamWriter failed opening archive."),
    ("data-path-missing", "ImageFolder(root='./data/val') -> FileNotFoundError: [Errno 2] No such "
     "file or directory: './data/val'"),
    ("data-path-missing", tb("train.py:12:<module>:ds = torchvision.datasets.CIFAR10('~/data', "
                             "train=True)",
                             "$PY/torchvision/datasets/cifar.py:69:__init__:raise RuntimeError("
                             "\"Dataset not found or corrupted. You can use download=True to "
                             "download it\")",
                             error="RuntimeError: Dataset not found or corrupted. You can use "
                                   "download=True to download it")),

    # --- dataloader-unpicklable (the first: a real spawn run here, Python 3.11 and torch 2.x; the
    # Python 3.13/3.14 wordings from a real 3.13 run and CPython 3.14's pickle.py)
    ("dataloader-unpicklable",
     "/home/kai/seg/.venv/lib/python3.11/site-packages/torch/utils/data/dataloader.py:438: "
     "UserWarning: Got pickle error when attempting to start a worker Process. This might be "
     "because the worker Process arguments are not picklable. Python 3.14+ changed the "
     "multiprocessing start method in non-Mac POSIX platforms to 'forkserver', which requires the "
     "worker Process arguments to be picklable. You can also try "
     "multiprocessing.set_start_method('fork').\n  return _MultiProcessingDataLoaderIter(self)\n"
     + tb("/home/kai/seg/train.py:88:main:for images, masks in train_loader:",
          "$PY/torch/utils/data/dataloader.py:505:__iter__:return self._get_iterator()",
          "$PY/torch/utils/data/dataloader.py:438:_get_iterator:return "
          "_MultiProcessingDataLoaderIter(self)",
          "$PY/torch/utils/data/dataloader.py:1178:__init__:w.start()",
          "/usr/lib/python3.11/multiprocessing/process.py:121:start:self._popen = self._Popen(self)",
          "/usr/lib/python3.11/multiprocessing/context.py:288:_Popen:return Popen(process_obj)",
          "/usr/lib/python3.11/multiprocessing/popen_spawn_posix.py:47:_launch:"
          "reduction.dump(process_obj, fp)",
          "/usr/lib/python3.11/multiprocessing/reduction.py:60:dump:"
          "ForkingPickler(file, protocol).dump(obj)",
          error="AttributeError: Can't pickle local object 'build_loaders.<locals>.<lambda>'",
          py="/home/kai/seg/.venv/lib/python3.11/site-packages")),
    ("dataloader-unpicklable",
     '  File "C:\\Users\\mei\\miniconda3\\envs\\cv\\lib\\multiprocessing\\popen_spawn_win32.py", '
     'line 93, in __init__\n    reduction.dump(process_obj, to_child)\n'
     '  File "C:\\Users\\mei\\miniconda3\\envs\\cv\\lib\\multiprocessing\\reduction.py", line 60, '
     "in dump\n    ForkingPickler(file, protocol).dump(obj)\n"
     "AttributeError: Can't pickle local object 'make_transforms.<locals>.<lambda>'"),
    ("dataloader-unpicklable", "AttributeError: Can't get local object "
     "'SegDataset.__init__.<locals>.to_tensor'"),
    ("dataloader-unpicklable", tb(
        "/srv/det/train.py:120:fit:for step, (images, targets) in enumerate(loader):",
        "$PY/torch/utils/data/dataloader.py:1178:__init__:w.start()",
        "/usr/lib/python3.14/multiprocessing/popen_forkserver.py:47:_launch:"
        "reduction.dump(process_obj, buf)",
        "/usr/lib/python3.14/multiprocessing/reduction.py:60:dump:"
        "ForkingPickler(file, protocol).dump(obj)",
        error="_pickle.PicklingError: Can't pickle local object <function "
              "get_loader.<locals>.collate at 0x7f2a1c3b8e00>\nwhen serializing tuple item 5\n"
              "when serializing dict item '_args'",
        py="/usr/lib/python3.14/site-packages")),
    ("dataloader-unpicklable", "_pickle.PicklingError: Can't pickle <function <lambda> at "
     "0x00000213C1F0E8B0>: attribute lookup <lambda> on datasets.augment failed"),
    ("dataloader-unpicklable", "_pickle.PicklingError: Can't pickle <function <lambda> at "
     "0x7f51d2a0c4a0>: it's not found as __main__.<lambda>"),
    ("dataloader-unpicklable", "_pickle.PicklingError: Can't pickle <function center_crop at "
     "0x000001D2F4A3B1F0>: it's not the same object as transforms.center_crop"),
    ("dataloader-unpicklable", "PicklingError: Can't pickle <function Augment.<lambda> at "
     "0x7fd0e8a1b9c0>: attribute lookup Augment.<lambda> on __main__ failed"),
    ("dataloader-unpicklable", tb(
        "/Users/lena/cls/train.py:64:<module>:for x, y in loader:",
        "$PY/torch/utils/data/dataloader.py:1178:__init__:w.start()",
        "/opt/homebrew/lib/python3.12/multiprocessing/popen_spawn_posix.py:47:_launch:"
        "reduction.dump(process_obj, fp)",
        "/opt/homebrew/lib/python3.12/multiprocessing/reduction.py:60:dump:"
        "ForkingPickler(file, protocol).dump(obj)",
        error="_pickle.PicklingError: Can't pickle <function normalize at 0x10f3c2de0>: it's not "
              "the same object as __main__.normalize",
        py="/Users/lena/cls/.venv/lib/python3.12/site-packages")),
    ("dataloader-unpicklable",
     '  File "D:\\proj\\lsun\\venv\\lib\\multiprocessing\\popen_spawn_win32.py", line 93, in '
     "__init__\n    reduction.dump(process_obj, to_child)\n"
     '  File "D:\\proj\\lsun\\venv\\lib\\multiprocessing\\reduction.py", line 60, in dump\n'
     "    ForkingPickler(file, protocol).dump(obj)\nTypeError: cannot pickle 'Environment' object"),
    ("dataloader-unpicklable",
     '  File "C:\\Anaconda3\\lib\\multiprocessing\\reduction.py", line 60, in dump\n'
     "    ForkingPickler(file, protocol).dump(obj)\nTypeError: can't pickle _thread.RLock objects"),
    # the parent fails to pickle, then the spawned child (which got nothing) reports last
    ("dataloader-unpicklable",
     "    ForkingPickler(file, protocol).dump(obj)\n"
     "TypeError: cannot pickle '_io.BufferedReader' object\n"
     "Traceback (most recent call last):\n"
     '  File "<string>", line 1, in <module>\n'
     '  File "C:\\Python310\\lib\\multiprocessing\\spawn.py", line 116, in spawn_main\n'
     "    exitcode = _main(fd, parent_sentinel)\n"
     '  File "C:\\Python310\\lib\\multiprocessing\\spawn.py", line 126, in _main\n'
     "    self = reduction.pickle.load(from_parent)\nEOFError: Ran out of input"),
    ("dataloader-unpicklable",
     "Traceback (most recent call last):\n"
     '  File "<string>", line 1, in <module>\n'
     '  File "E:\\envs\\det\\lib\\multiprocessing\\spawn.py", line 105, in spawn_main\n'
     "    exitcode = _main(fd)\n"
     '  File "E:\\envs\\det\\lib\\multiprocessing\\spawn.py", line 115, in _main\n'
     "    self = reduction.pickle.load(from_parent)\nEOFError: Ran out of input"),
    ("dataloader-unpicklable", "    raise RuntimeError('''\nRuntimeError:\n"
     "        An attempt has been made to start a new process before the\n"
     "        current process has finished its bootstrapping phase.\n\n"
     "        This probably means that you are not using fork to start your\n"
     "        child processes and you have forgotten to use the proper idiom\n"
     "        in the main module:\n\n"
     "            if __name__ == '__main__':\n                freeze_support()\n"
     "                ...\n"),
    # the child's bootstrapping error, then the parent's summary: the cause still ranks first
    ("dataloader-unpicklable",
     "RuntimeError:\n        An attempt has been made to start a new process before the\n"
     "        current process has finished its bootstrapping phase.\n\n"
     "        The \"freeze_support()\" line can be omitted if the program\n"
     "        is not going to be frozen to produce an executable.\n"
     + tb("C:\\Users\\mei\\cls\\train.py:40:<module>:for images, labels in train_loader:",
          "$PY/torch/utils/data/dataloader.py:1285:_try_get_data:raise RuntimeError(f'DataLoader "
          "worker (pid(s) {pids_str}) exited unexpectedly') from e",
          error="RuntimeError: DataLoader worker (pid(s) 15872, 9044) exited unexpectedly",
          py="C:\\Users\\mei\\cls\\venv\\Lib\\site-packages")),
    # --- cuda-async-error (torch 2.x wordings from c10's CUDA check, older THC wordings)
    ("cuda-async-error", "RuntimeError: CUDA error: device-side assert triggered"),
    ("cuda-async-error", tb("/home/ana/det/engine.py:212:train_one_epoch:running += "
                            "loss.item() * images.size(0)",
                            error="RuntimeError: CUDA error: device-side assert triggered"
                                  + CUDA_TAIL)),
    ("cuda-async-error", tb("/workspace/seg/metrics.py:18:pixel_acc:correct = (pred == "
                            "target).sum().item()",
                            error="torch.AcceleratorError: CUDA error: device-side assert triggered\n"
                                  "Search for `cudaErrorAssert' in https://docs.nvidia.com/cuda/"
                                  "cuda-runtime-api/group__CUDART__TYPES.html for more information."
                                  + CUDA_TAIL)),
    ("cuda-async-error", "RuntimeError: CUDA error: an illegal memory access was encountered"
                         + CUDA_TAIL),
    ("cuda-async-error", "RuntimeError: cuda runtime error (59) : device-side assert triggered at "
                         "/pytorch/aten/src/THC/generic/THCTensorCopy.cpp:20"),
    ("cuda-async-error", "THCudaCheck FAIL file=/pytorch/aten/src/THC/THCCachingHostAllocator.cpp "
                         "line=278 error=700 : an illegal memory access was encountered"),
    # a gather index past its dimension: the kernel's assert printed after the Python error
    ("cuda-async-error", "RuntimeError: CUDA error: device-side assert triggered" + CUDA_TAIL
     + "\n/opt/pytorch/aten/src/ATen/native/cuda/ScatterGatherKernel.cu:144: operator(): block: "
       "[0,0,0], thread: [7,0,0] Assertion `idx_dim >= 0 && idx_dim < index_size && \"index out "
       "of bounds\"` failed."),
    # an embedding id past the table, asserted in IndexKernel.cu before the Python error
    ("cuda-async-error", "/opt/pytorch/aten/src/ATen/native/cuda/Indexing.cu:1289: "
     "indexSelectLargeIndex: block: [41,0,0], thread: [64,0,0] Assertion `srcIndex < "
     "srcSelectDimSize` failed.\n"
     + tb("/home/ana/ocr/model.py:51:forward:x = self.embed(tokens) + self.pos",
          error="RuntimeError: CUDA error: device-side assert triggered" + CUDA_TAIL)),
    ("cuda-async-error", "terminate called after throwing an instance of 'c10::Error'\n"
     "  what():  CUDA error: an illegal memory access was encountered\n"
     "Search for `cudaErrorIllegalAddress' in https://docs.nvidia.com/cuda/cuda-runtime-api/"
     "group__CUDART__TYPES.html for more information.\n"
     "Exception raised from c10_cuda_check_implementation at /pytorch/c10/cuda/"
     "CUDAException.cpp:43 (most recent call first):"),
    # --- scheduler-before-optimizer (the first: this machine's torch, a real run)
    ("scheduler-before-optimizer", "/home/kai/cls/train.py:97: UserWarning: Detected call of "
     "`lr_scheduler.step()` before `optimizer.step()`. In PyTorch 1.1.0 and later, you should "
     "call them in the opposite order: `optimizer.step()` before `lr_scheduler.step()`.  Failure "
     "to do this will result in PyTorch skipping the first value of the learning rate schedule. "
     "See more details at https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate\n"
     "  scaler.step(optimizer); scaler.update(); scheduler.step()"),
    ("scheduler-before-optimizer", "/opt/conda/lib/python3.8/site-packages/torch/optim/"
     "lr_scheduler.py:131: UserWarning: Detected call of `lr_scheduler.step()` before "
     "`optimizer.step()`. In PyTorch 1.1.0 and later, you should call them in the opposite "
     "order: `optimizer.step()` before `lr_scheduler.step()`.  Failure to do this will result in "
     "PyTorch skipping the first value of the learning rate schedule. See more details at "
     "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate\n"
     "  warnings.warn(\"Detected call of `lr_scheduler.step()` before `optimizer.step()`. \""),
    # pasted through Markdown: the backticks are gone, the lines wrapped
    ("scheduler-before-optimizer", "UserWarning: Detected call of lr_scheduler.step() before "
     "optimizer.step(). In PyTorch 1.1.0 and\nlater, you should call them in the opposite order: "
     "optimizer.step() before\nlr_scheduler.step()."),
    ("scheduler-before-optimizer", "you should call them in the opposite order: "
     "`optimizer.step()` before `lr_scheduler.step()`.  Failure to do this will result in PyTorch "
     "skipping the first value of the learning rate schedule."),
    ("scheduler-before-optimizer", "/home/kai/cls/train.py:61: UserWarning: Seems like "
     "`optimizer.step()` has been overridden after learning rate scheduler initialization. "
     "Please, make sure to call `optimizer.step()` before `lr_scheduler.step()`. See more details "
     "at https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"),

    # --- patterns added to recipes owned by other tables
    ("tensor-does-not-require-grad", "RuntimeError: element 3 of tensors does not require grad and "
     "does not have a grad_fn"),
    ("checkpoint-not-a-checkpoint", tb("$PY/torch/serialization.py:1246:_legacy_load:magic_number = "
                                       "pickle_module.load(f, **pickle_load_args)",
                                       error="_pickle.UnpicklingError: invalid load key, '\\x0a'.")),
    ("checkpoint-not-a-checkpoint", "_pickle.UnpicklingError: invalid load key, 'P'."),
    ("checkpoint-not-a-checkpoint", "_pickle.UnpicklingError: Weights only load failed. ... "
     "Please file an issue with the following so that we can make `weights_only=True` compatible "
     "with your use case: WeightsUnpickler error: Unsupported operand 80"),
    ("checkpoint-load-failed", "Weights only load failed. This file can still be loaded, to do so "
     "you have two options, do those steps only if you trust the source of the checkpoint.\n"
     "WeightsUnpickler error: Unsupported global: GLOBAL omegaconf.dictconfig.DictConfig was not an "
     "allowed global by default."),
    ("checkpoint-load-failed", "UnpicklingError: Weights only load failed. Re-running `torch.load` "
     "with `weights_only` set to `False` will likely succeed, but it can result in arbitrary code "
     "execution. WeightsUnpickler error: Unsupported class numpy.core.multiarray._reconstruct"),
    ("torch-import-failed", "ImportError: libtorch_cuda_cpp.so: cannot open shared object file: No "
     "such file or directory"),
    ("torch-import-failed", "OSError: libcublas.so.11: cannot open shared object file: No such file "
     "or directory"),
    ("torch-import-failed", "OSError: [WinError 126] The specified module could not be found. Error "
     "loading \\\"D:\\\\envs\\\\cv\\\\lib\\\\site-packages\\\\torch\\\\lib\\\\c10.dll\\\" or one "
     "of its dependencies."),
    ("shm-docker-ipc", "RuntimeError: unable to open shared memory object </torch_4182_2719480128_"
     "1> in read-write mode: Too many open files (24)"),
    ("shm-docker-ipc", "ERROR: Unexpected bus error encountered in worker. This might be caused by "
     "insufficient shared memory (shm).\nBus error. It is possible that dataloader's workers are "
     "out of shared memory. Please try to raise your shared memory limit."),
    ("shm-docker-ipc", "RuntimeError: DataLoader worker (pid 611) is killed by signal:\n   Bus "
     "error."),
    ("shm-docker-ipc", "Epoch 1: 3%|▎ | 12/400\nBus error (core dumped)"),
    ("torchvision-torch-mismatch", "RuntimeError: Detected that PyTorch and torchvision were "
     "compiled with different CUDA major versions. PyTorch has CUDA Version=11.8 and torchvision "
     "has CUDA Version=12.1. Please reinstall the torchvision that matches your PyTorch install."),
    ("torchvision-torch-mismatch", "RuntimeError: No such operator torchvision::roi_align"),
    ("torchvision-torch-mismatch", "/opt/venv/lib/python3.11/site-packages/torchvision/io/image.py:14: "
     "UserWarning: Failed to load image Python extension: '/opt/venv/lib/python3.11/site-packages/"
     "torchvision/image.so: undefined symbol: _ZN3c1017RegisterOperatorsD1Ev'"),
    ("hub-offline-no-cache", "OSError: We couldn't connect to 'https://huggingface.co' to load this "
     "file, couldn't find it in the cached files and it looks like facebook/dinov2-small is not the "
     "path to a directory containing a file named preprocessor_config.json."),
    ("hub-cache-unwritable", "PermissionError: [Errno 13] Permission denied: '/.cache'"),
    ("hub-cache-unwritable", "PermissionError: [Errno 13] Permission denied: '/app/.cache/"
     "huggingface/hub/models--timm--resnet18.a1_in1k'"),
    ("hub-cache-unwritable", "PermissionError: [Errno 13] Permission denied: '/home/ci/.torch/"
     "models'"),
    # an asynchronous kernel failure, not a library-path problem: its own recipe now
    ("cudnn-execution-failed", "RuntimeError: cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
    ("gpu-probe-failed", "RuntimeError: CuDNN error: CUDNN_STATUS_MAPPING_ERROR"),
    ("gpu-arch-unsupported", "THCudaCheck FAIL file=/pytorch/aten/src/THC/generic/THCTensorMath.cu "
     "line=15 error=8 : invalid device function"),
    ("gpu-arch-unsupported", "RuntimeError: CUDA error: invalid device function\nCUDA kernel errors "
     "might be asynchronously reported at some other API call"),
    ("resources-open-files-limit", "OSError: [Errno 24] Too many files open"),
    ("shm-docker-ipc", "RuntimeError: DataLoader worker (pid 4121) is killed by signal: Bus\nerror. It "
     "is possible that dataloader's workers are out of shared\nmemory. Please try to raise your "
     "shared memory limit."),
    ("torchvision-torch-mismatch", "ValueError: Could not find the operator torchvision::roi_align. "
     "Please make sure you have already registered the operator"),
    ("target-out-of-bounds", "RuntimeError: Target 12 out of bounds at /pytorch/aten/src/THNN/"
     "generic/ClassNLLCriterion.c:61"),
    ("checkpoint-cuda-saved", "RuntimeError: Attempting to deserialize object on a CUDA device"),
    ("hub-http-403", "Downloading: \"https://github.com/ultralytics/assets/releases/download/v8.2.0/"
     "yolov8s.pt\" to 'yolov8s.pt'...\nurllib.error.HTTPError: HTTP Error 403: Forbidden"),
    ("hub-http-403", "urllib.error.HTTPError: HTTP Error 403: rate limit exceeded"),
    ("hub-http-403", "requests.exceptions.HTTPError: 403 Client Error: Forbidden for url: "
     "https://huggingface.co/org/model/resolve/main/model.safetensors"),
    ("yolo-class-out-of-range", "AssertionError: Label class 5.0 exceeds nc=5 in data/voc.yaml. "
     "Possible class labels are 0-4"),
    ("unet-shape-mismatch", "RuntimeError: Sizes of tensors must match except in dimension 2. "
     "Expected size 17 but got size 16 for tensor number 1 in the list."),
    ("unet-shape-mismatch", "RuntimeError: inconsistent tensor sizes at /pytorch/torch/lib/THC/"
     "generic/THCTensorMath.cu:157"),
    # default_collate inside a worker (a real run here: the first sample is the larger one)
    ("collate-unequal-sizes", "RuntimeError: Caught RuntimeError in DataLoader worker process 0.\n"
     + tb("$PY/torch/utils/data/_utils/worker.py:375:_worker_loop:data = fetcher.fetch(index)",
          "$PY/torch/utils/data/_utils/fetch.py:57:fetch:return self.collate_fn(data)",
          "$PY/torch/utils/data/_utils/collate.py:401:default_collate:return collate(batch, "
          "collate_fn_map=default_collate_fn_map)",
          "$PY/torch/utils/data/_utils/collate.py:274:collate_tensor_fn:out = "
          "elem.new(storage).resize_(len(batch), *list(elem.size()))",
          error="RuntimeError: Trying to resize storage that is not resizable")
     .replace("Traceback (most recent call last)", "Original Traceback (most recent call last)")),
    ("collate-unequal-sizes", "RuntimeError: Trying to resize storage that is not resizable"),
    ("collate-unequal-sizes", "RuntimeError: Trying to resize storage that is not resizable at "
     "/opt/conda/conda-bld/pytorch_1579022060824/work/aten/src/TH/THStorageFunctions.cpp:87"),
]

# Must match none of the new recipes (most match nothing at all).
UNRELATED = [
    "OSError: [Errno 98] Address already in use",
    "socket.error: [Errno 98] Address already in use: ('0.0.0.0', 8080)",
    "uvicorn: ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): "
    "address already in use",
    "requests.exceptions.ConnectTimeout: HTTPSConnectionPool(host='api.example.com', port=443): "
    "Max retries exceeded (Caused by ConnectTimeoutError(..., 'Connection timed out'))",
    "TimeoutError: timed out",
    "KeyError: 'model'",
    "RuntimeError: Unknown backend 'xyz'",
    "ValueError: Unknown model type 'bert' in config",
    "AttributeError: 'str' object has no attribute 'shape'",
    "The size of tensor a (4) must match the size of tensor b (3) at non-singleton dimension 1",
    "FileNotFoundError: [Errno 2] No such file or directory: 'config.yaml'",
    "subprocess.CalledProcessError: Command '['git', 'pull']' returned non-zero exit status 1.",
    "Process finished with exit code 1",
    "Tests killed after timeout; killed process group",
    "warning: the NaN-boxing optimisation is disabled",
    "sqlite3.OperationalError: database is locked",
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    "HTTPError: HTTP Error 401: Unauthorized",
    "requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: "
    "https://api.github.com/user",
    "ssl.SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1129)",
    "PermissionError: [Errno 13] Permission denied: '/var/log/app.log'",
    "datasets.exceptions.DatasetNotFoundError: Dataset 'org/name' doesn't exist on the Hub",
    # An HTTP 401/403 from any other service (an API, a scraper) is not a weight download.
    "requests.exceptions.HTTPError: 403 Client Error: Forbidden for url: https://api.example.com/v2/items",
    "urllib.error.HTTPError: HTTP Error 403: Forbidden",
    "HTTP request sent, awaiting response... 403 Forbidden\nERROR 403: Forbidden.",
    "epoch 3 loss 0.231 acc 0.91 lr 0.001 -- outputs saved to runs/exp3",
    "AssertionError: expected 3 images, got 2",
    # pickling errors outside a worker start: torch.save of a model holding a lock, a class
    # reloaded after the model was built, a deepcopy, an unrelated pickle.load of an empty file
    tb("/home/kai/cls/train.py:140:save:torch.save(model, 'runs/exp1/last.pt')",
       "$PY/torch/serialization.py:1003:save:_save(",
       "$PY/torch/serialization.py:1253:_save:pickler.dump(obj)",
       error="TypeError: cannot pickle '_thread.lock' object"),
    tb("/home/kai/cls/train.py:140:save:torch.save(model, 'runs/exp1/last.pt')",
       "$PY/torch/serialization.py:1253:_save:pickler.dump(obj)",
       error="_pickle.PicklingError: Can't pickle <class 'models.resnet.ResNet'>: it's not the "
             "same object as models.resnet.ResNet"),
    "TypeError: cannot pickle '_thread.RLock' object",
    "EOFError: Ran out of input",
    # other CUDA errors have their own recipes
    "RuntimeError: CUDA error: out of memory" + CUDA_TAIL,
    "RuntimeError: CUDA error: invalid device ordinal" + CUDA_TAIL,
    "RuntimeError: CUDA error: no kernel image is available for execution on the device" + CUDA_TAIL,
    "RuntimeError: cuDNN error: CUDNN_STATUS_EXECUTION_FAILED",
    # other scheduler warnings
    "UserWarning: The epoch parameter in `scheduler.step()` was not necessary and is being "
    "deprecated where possible. Please use `scheduler.step()` to step the scheduler.",
    "UserWarning: To get the last learning rate computed by the scheduler, please use "
    "`get_last_lr()`.",
    "Epoch 3: lr 0.000100 -> 0.000050 (scheduler.step() after optimizer.step())",
]


def _ids(cases):
    return [f"{rid}-{i}" for i, (rid, _) in enumerate(cases)]


# Messages the new recipes also match, or come close to, that another recipe owns: it must rank
# first (a device-side assert whose assertion names the loss is a label out of range; the plain
# `EOFError: Ran out of input` of torch.load is a cut checkpoint; a worker killed by a signal).
OWNED_ELSEWHERE = [
    ("target-out-of-bounds",
     "../aten/src/ATen/native/cuda/Loss.cu:250: nll_loss_forward_reduce_cuda_kernel_2d: block: "
     "[0,0,0], thread: [12,0,0] Assertion `t >= 0 && t < n_classes` failed.\n"
     + tb("/home/ana/cls/train.py:77:train:loss.backward()",
          "$PY/torch/_tensor.py:648:backward:torch.autograd.backward(",
          error="RuntimeError: CUDA error: device-side assert triggered" + CUDA_TAIL)),
    # the assertion printed after the Python error (stderr and stdout interleaved)
    ("target-out-of-bounds",
     "[rank1]: RuntimeError: CUDA error: device-side assert triggered" + CUDA_TAIL.replace(
         "\n", "\n[rank1]: ")
     + "\n\n../aten/src/ATen/native/cuda/Loss.cu:250: nll_loss_forward_reduce_cuda_kernel_2d: "
       "block: [0,0,0], thread: [3,0,0] Assertion `t >= 0 && t < n_classes` failed."),
    ("target-out-of-bounds",
     tb("/home/ana/seg/train.py:40:<module>:loss = F.cross_entropy(logits, masks)",
        "$PY/torch/nn/functional.py:3494:cross_entropy:return torch._C._nn.cross_entropy_loss("
        "input, target, weight, _Reduction.get_enum(reduction), ignore_index, label_smoothing)",
        error="RuntimeError: CUDA error: device-side assert triggered")),
    ("target-out-of-bounds",
     "/pytorch/aten/src/THCUNN/ClassNLLCriterion.cu:106: cunn_ClassNLLCriterion_updateOutput_"
     "kernel: block: [0,0,0], thread: [2,0,0] Assertion `t >= 0 && t < n_classes` failed.\n"
     "RuntimeError: cuda runtime error (59) : device-side assert triggered at "
     "/pytorch/aten/src/THC/generic/THCStorage.cpp:36"),
    ("cudnn-execution-failed", "RuntimeError: cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
    ("gpu-busy-unavailable", "RuntimeError: CUDA error: CUDA-capable device(s) is/are busy or "
                             "unavailable" + CUDA_TAIL),
    ("checkpoint-truncated",
     tb("/home/kai/cls/eval.py:12:<module>:state = torch.load('best.pt', map_location='cpu')",
        "$PY/torch/serialization.py:1554:load:return _legacy_load(",
        "$PY/torch/serialization.py:1802:_legacy_load:magic_number = pickle_module.load(f, "
        "**pickle_load_args)",
        error="EOFError: Ran out of input")),
    ("dataloader-worker-crash", "RuntimeError: DataLoader worker (pid(s) 28763, 28764) exited "
                                "unexpectedly"),
    ("collate-unequal-sizes", "RuntimeError: stack expects each tensor to be equal size, but got "
                              "[3, 256, 341] at entry 0 and [3, 256, 256] at entry 1"),
]


def test_every_recipe_here_exists():
    catalog = load_catalog()
    missing = [rid for rid in (*MINE, *ADDED) if rid not in catalog]
    assert not missing, missing


@pytest.mark.parametrize("recipe_id,text", FIRST, ids=_ids(FIRST))
def test_realistic_message_ranks_its_recipe_first(recipe_id, text):
    matches = match_text(text)
    assert matches, f"nothing matched; expected {recipe_id}"
    assert matches[0].recipe == recipe_id, f"expected {recipe_id} first, got {ranked(text)}"


@pytest.mark.parametrize("owner,text", OWNED_ELSEWHERE, ids=_ids(OWNED_ELSEWHERE))
def test_problems_owned_by_other_recipes_are_not_claimed(owner, text):
    matches = match_text(text)
    assert matches and matches[0].recipe == owner, ranked(text)


@pytest.mark.parametrize("text", UNRELATED)
def test_unrelated_error_matches_none_of_the_new_recipes(text):
    hits = [m.recipe for m in match_text(text) if m.recipe in MINE]
    assert hits == [], f"{text!r} wrongly matched {hits}"


def test_every_new_recipe_has_several_wordings():
    counts = {rid: sum(r == rid for r, _ in FIRST) for rid in MINE}
    thin = {rid: n for rid, n in counts.items() if n < 2}
    assert not thin, f"fewer than 2 realistic messages: {thin}"


def test_every_pattern_is_exercised_by_a_message():
    """Each pattern of the new recipes, and each pattern issue 11 added to other recipes, is the
    one that fires for at least one realistic message (dead patterns are typos or overfitting)."""
    catalog = load_catalog()
    unused = []
    for rid in MINE:
        for pattern in catalog[rid].compiled:
            if not any(pattern.search(t) for r, t in FIRST if r == rid):
                unused.append((rid, pattern.pattern))
    for rid, starts in ADDED.items():
        for start in starts:
            patterns = [p for p in catalog[rid].compiled if start in p.pattern]
            assert patterns, f"{rid}: no pattern contains {start!r}"
            for pattern in patterns:
                if not any(pattern.search(t) for r, t in FIRST if r == rid):
                    unused.append((rid, pattern.pattern))
    assert not unused, f"patterns no message exercises: {unused}"


_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*]\)[+*{]")


def test_patterns_stay_linear():
    catalog = load_catalog()
    risky = [(rid, p) for rid in (*MINE, *ADDED) for p in catalog[rid].patterns
             if _NESTED_QUANTIFIER.search(p)]
    assert not risky, risky


def test_torchrun_log_names_the_root_cause_not_the_summary():
    """A real torchrun run (rank 1 crashes with a bad class index, rank 0 is then stopped): the
    root-cause rank's error ranks first, the launcher's summary after it."""
    text = (LOGS / "torchrun_target_oob.log").read_text()
    matches = match_text(text)
    assert matches[0].recipe == "target-out-of-bounds", ranked(text)
    assert "Target 7 is out of bounds" in matches[0].line
    assert "torchrun-child-failed" in [m.recipe for m in matches]


def test_a_sigkilled_rank_is_explained_by_the_launcher_summary():
    text = (LOGS / "torchrun_sigkill.log").read_text()
    best = match_text(text)[0]
    assert best.recipe == "torchrun-child-failed"


def test_ddp_errors_are_distributed_not_the_single_process_recipe():
    text = ("RuntimeError: Expected to have finished reduction in the prior iteration before "
            "starting a new one.")
    assert [m.recipe for m in match_text(text)] == ["ddp-unused-parameters"]


@pytest.mark.parametrize("text", [
    "urllib.error.HTTPError: HTTP Error 401: Unauthorized",
    "urllib.error.HTTPError: HTTP Error 403: Forbidden",
    "requests.exceptions.HTTPError: 403 Client Error: Forbidden for url: https://api.example.com/x",
])
def test_a_bare_http_401_or_403_is_not_a_weight_download(text):
    assert match_text(text) == []
