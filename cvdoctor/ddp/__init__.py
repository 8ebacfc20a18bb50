"""Distributed readiness: the model checks that matter for DistributedDataParallel, run inside a
real `torch.distributed` process group of N processes on this machine.

- `runner`: starts N rank processes (`python -m cvdoctor.ddp.worker`) in one process group, on a
  free port, watches their event logs with timeouts, dumps the stacks of ranks that stop making
  progress, and kills the whole group at the end: no process is left behind.
- `worker`: one rank, as `torchrun` would start it (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
  MASTER_PORT set): joins the group, loads the same model file (or the pickled objects the API
  was given), wraps the model in DistributedDataParallel and takes real steps, writing what it
  saw as JSON lines.
- `state`: digests of parameters, buffers and state kept outside them (in the rank processes).
- `analysis`: what the ranks' logs say, compared across ranks (plain data for the checks).
- `facts`: the `ddp_setup` and `ddp` facts of the model command.
"""
