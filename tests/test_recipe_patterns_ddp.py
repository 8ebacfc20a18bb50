"""Error-text patterns of the recipes behind env.limits, env.distributed and the model.ddp checks:
the messages NCCL, gloo, libibverbs and torch.distributed print (real wordings, different hosts,
pids and paths) rank their recipe first; unrelated errors match none of them."""
from __future__ import annotations



from pattern_tables import pattern_table_tests

MINE = ("memlock-rdma", "dist-launcher-env", "dist-socket-ifname", "dist-ranks-exceed-gpus")
PY = "/usr/local/lib/python3.12/dist-packages"
CUDA_TAIL = ("\nCUDA kernel errors might be asynchronously reported at some other API call, so the "
             "stacktrace below might be incorrect.\nFor debugging consider passing "
             "CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side "
             "assertions.")

FIRST = [
    ("memlock-rdma", "gpu-node-07:21431:21580 [3] misc/ibvwrap.cc:153 NCCL WARN Call to "
                     "ibv_reg_mr failed with error Bad address"),
    ("memlock-rdma", "dgx1:2891:2950 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB ; OOB ib0:10.0.0.1<0>\n"
                     "dgx1:2891:2950 [0] misc/ibvwrap.cc:106 NCCL WARN Call to ibv_create_qp failed\n"
                     "dgx1:2891:2950 [0] NCCL INFO transport/net_ib.cc:421 -> 2"),
    ("memlock-rdma", "libibverbs: Warning: RLIMIT_MEMLOCK is 32768 bytes.\n"
                     "    This will severely limit memory registrations."),
    ("memlock-rdma", "libibverbs: Warning: RLIMIT_MEMLOCK is 65536 bytes.\n"
                     "    This will severely limit memory registrations.\n"
                     "node2:911:1024 [1] NCCL INFO NET/IB : Using [0]mlx5_0:1/RoCE\n"
                     "node2:911:1024 [1] misc/ibvwrap.cc:190 NCCL WARN Call to ibv_reg_mr failed "
                     "with error Cannot allocate memory"),
    ("memlock-rdma", "[rank1]: torch.distributed.DistBackendError: NCCL error in: /opt/pytorch/"
                     "pytorch/torch/csrc/distributed/c10d/NCCLUtils.cpp:77, unhandled system error "
                     "(run with NCCL_DEBUG=INFO for details), NCCL version 2.27.7\n"
                     "[rank1]: Last error:\n[rank1]: Call to ibv_reg_mr failed"),
    ("dist-launcher-env", "ValueError: Error initializing torch.distributed using env:// "
                          "rendezvous: environment variable MASTER_ADDR expected, but not set"),
    ("dist-launcher-env", "Traceback (most recent call last):\n"
                          '  File "/home/ana/train.py", line 14, in <module>\n'
                          '    dist.init_process_group("nccl")\n'
                          f'  File "{PY}/torch/distributed/rendezvous.py", line 246, in '
                          "_env_rendezvous_handler\n"
                          '    rank = int(_get_env_or_raise("RANK"))\n'
                          "ValueError: Error initializing torch.distributed using env:// "
                          "rendezvous: environment variable RANK expected, but not set"),
    ("dist-launcher-env", "[rank0]: ValueError: Error initializing torch.distributed using "
                          "env:// rendezvous: environment variable WORLD_SIZE expected, but not "
                          "set"),
    ("dist-socket-ifname", "ubuntu:4775:4775 [0] bootstrap.cc:37 NCCL WARN Bootstrap : no socket "
                           "interface found\nubuntu:4775:4775 [0] NCCL INFO init.cc:128 -> 3"),
    ("dist-socket-ifname", "RuntimeError: [enforce fail at ../third_party/gloo/gloo/transport/"
                           "tcp/device.cc:83] ifa != nullptr. Unable to find address for: eth0"),
    ("dist-socket-ifname", "[rank1]: RuntimeError: [enforce fail at /opt/pytorch/pytorch/"
                           "third_party/gloo/gloo/transport/tcp/device.cc:83] ifa != nullptr. "
                           "Unable to find address for: ^lo"),
    ("dist-socket-ifname", "worker-3:14391:14391 [0] NCCL INFO NCCL_SOCKET_IFNAME set by "
                           "environment to ib0\nworker-3:14391:14391 [0] bootstrap.cc:45 NCCL "
                           "WARN Bootstrap : no socket interface found\nworker-3:14391:14391 [0] "
                           "NCCL INFO init.cc:82 -> 3"),
    ("dist-ranks-exceed-gpus", "h100-node:2811:2811 [1] init.cc:1040 NCCL WARN Duplicate GPU "
                               "detected : rank 1 and rank 0 both on CUDA device 1a000"),
    ("dist-ranks-exceed-gpus", "torch.distributed.DistBackendError: NCCL error in: /opt/pytorch/"
                               "pytorch/torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:3356, "
                               "invalid usage (run with NCCL_DEBUG=WARN for details), NCCL version "
                               "2.26.2\nncclInvalidUsage: This usually reflects invalid usage of "
                               "NCCL library.\nLast error:\nDuplicate GPU detected : rank 1 and "
                               "rank 0 both on CUDA device 1000"),
    ("dist-ranks-exceed-gpus", "Traceback (most recent call last):\n"
                               '  File "/workspace/train.py", line 31, in main\n'
                               "    torch.cuda.set_device(local_rank)\n"
                               f'  File "{PY}/torch/cuda/__init__.py", line 567, in set_device\n'
                               "    torch._C._cuda_setDevice(device)\n"
                               "RuntimeError: CUDA error: invalid device ordinal" + CUDA_TAIL),
]

UNRELATED = [
    "KeyError: 'lr'",
    "RuntimeError: CUDA error: out of memory",
    "OSError: [Errno 12] Cannot allocate memory",
    "ulimit: max locked memory: cannot modify limit: Operation not permitted",
    "KeyError: 'RANK'",
    "OSError: [Errno 98] Address already in use",
    "RuntimeError: CUDA error: out of memory",
]


globals().update(pattern_table_tests(MINE, FIRST, UNRELATED))
