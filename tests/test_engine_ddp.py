"""The joint decoder's tied offset biases (F Parameters over one storage, as the official model) under
DistributedDataParallel: two gloo processes fed the same clip end with the single-process gradients,
with and without `find_unused_parameters`, and every frame's Parameter still shares the one storage."""

import uuid

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pavenet.modeling.ms_deform_attn import MultiFrameDeformAttn


def _module_and_inputs():
    torch.manual_seed(0)
    attn = MultiFrameDeformAttn(
        num_frames=3, embed_dim=16, num_heads=2, num_levels=2, num_points=2, dropout=0.0
    )
    g = torch.Generator().manual_seed(1)
    inputs = (
        torch.randn(1, 4, 16, generator=g),
        torch.randn(1, 4, 16, generator=g),
        torch.randn(1, 3, 4 * 4 + 2 * 2, 16, generator=g),
        torch.rand(1, 3, 4, 2, 2, generator=g),
        torch.tensor([[4, 4], [2, 2]]),
    )
    return attn, inputs


def _grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters()}


def _worker(rank, init_file, result_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        out = {}
        for find_unused in (False, True):
            attn, (q, pos, values, refs, shapes) = _module_and_inputs()
            ddp = torch.nn.parallel.DistributedDataParallel(
                attn, find_unused_parameters=find_unused
            )
            ddp(q, pos, values, refs, shapes).square().sum().backward()
            biases = [m.bias for m in attn.offset_layers()]
            out[find_unused] = {
                "grads": _grads(attn),
                "shared": len({b.data_ptr() for b in biases}) == 1,
            }
        if rank == 0:
            torch.save(out, result_file)
    finally:
        dist.destroy_process_group()


def test_ddp_keeps_per_frame_gradients_of_the_shared_storage(tmp_path):
    attn, (q, pos, values, refs, shapes) = _module_and_inputs()
    attn(q, pos, values, refs, shapes).square().sum().backward()
    single = _grads(attn)
    result = tmp_path / "ddp.pth"
    mp.spawn(
        _worker, args=(str(tmp_path / f"init_{uuid.uuid4().hex}"), str(result)), nprocs=2, join=True
    )
    for find_unused, out in torch.load(result, weights_only=True).items():
        assert out["shared"], (
            f"DDP (find_unused_parameters={find_unused}) separated the offset-bias storage"
        )
        assert set(out["grads"]) == set(single)
        for name, grad in single.items():
            torch.testing.assert_close(
                out["grads"][name], grad, msg=f"{name}, find_unused={find_unused}"
            )
    # the per-frame gradients are distinct (not summed into one)
    assert not torch.allclose(single["pre_sampling_offsets.bias"], single["sampling_offsets.bias"])
