"""DeepSpeed and FSDP through accelerate, without DeepSpeed installed: the engine's sizes from the
run's flags, the accumulation boundary, what multi-process runs refuse, and the ZeRO optimizer
state saved as tensors and numbers.
(A real one-process ZeRO-2 run and its exact resume: benchmarks/scale_out_check.py.)"""

import enum
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from anyfeedback.errors import InputError
from anyfeedback.llm import engines
from anyfeedback.llm.checkpoint import load_optimizer_state, optimizer_state


def _accelerator(ds_config: dict, kind=DistributedType.DEEPSPEED):
    plugin = SimpleNamespace(deepspeed_config=ds_config)
    return SimpleNamespace(
        distributed_type=kind, state=SimpleNamespace(deepspeed_plugin=plugin), sync_gradients=True
    )


def _cfg(**kw):
    base = dict(batch_size=32, gradient_accumulation_steps=2, max_grad_norm=1.0, save_steps=0)
    return SimpleNamespace(**{**base, **kw})


def test_configure_fills_auto_sizes_from_flags():
    ds = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto"}
    ds |= {"gradient_accumulation_steps": 2, "gradient_clipping": 1.0}
    engines.configure(_accelerator(ds), _cfg(), world=4)
    # 32 records per step over 4 processes × 2 micro-batches = 4 records per micro-batch
    assert ds["train_micro_batch_size_per_gpu"] == 4
    assert ds["train_batch_size"] == 32
    assert ds["gradient_accumulation_steps"] == 2 and ds["gradient_clipping"] == 1.0


@pytest.mark.parametrize(
    ("ds", "cfg", "world", "field"),
    [
        ({"gradient_accumulation_steps": 1}, {}, 1, "deepspeed gradient_accumulation_steps"),
        ({"gradient_clipping": 1.0}, {"max_grad_norm": 0.5}, 1, "deepspeed gradient_clipping"),
        ({"zero_optimization": {"stage": 3}}, {}, 1, "deepspeed zero_stage"),
        ({}, {"save_steps": 100}, 2, "--save-steps"),
    ],
)
def test_configure_refuses_what_it_cannot_honour(ds, cfg, world, field):
    with pytest.raises(InputError) as err:
        engines.configure(_accelerator(dict(ds)), _cfg(**cfg), world=world)
    assert err.value.field == field and "\n" not in str(err.value)


def test_multi_process_fsdp_refuses_checkpoints_and_one_process_keeps_them():
    fsdp = _accelerator({}, DistributedType.FSDP)
    with pytest.raises(InputError) as err:
        engines.configure(fsdp, _cfg(save_steps=100), world=2)
    assert err.value.field == "--save-steps" and "FSDP" in str(err.value)
    engines.configure(fsdp, _cfg(save_steps=100), world=1)  # one process: whole tensors
    engines.configure(fsdp, _cfg(save_steps=0), world=8)  # no checkpoints: nothing to refuse


def test_configure_leaves_other_engines_alone():
    ds = {"train_micro_batch_size_per_gpu": "auto"}
    engines.configure(_accelerator(ds, DistributedType.MULTI_GPU), _cfg(), world=2)
    assert ds == {"train_micro_batch_size_per_gpu": "auto"}


def test_backward_marks_the_last_micro_batch_as_the_boundary():
    acc = _accelerator({})
    marks = []
    for i in range(3):
        opts = engines.backward_options(acc, i, 3)
        marks.append(acc.sync_gradients)
    assert marks == [False, False, True] and opts == {"scale_wrt_gas": False}
    ddp = _accelerator({}, DistributedType.MULTI_GPU)
    assert engines.backward_options(ddp, 0, 3) == {} and ddp.sync_gradients


class _Stage(enum.IntEnum):
    gradients = 2


class _LossScaler:  # a class a weights_only load refuses, like DeepSpeed's
    def __init__(self):
        self.cur_scale, self.cur_iter, self.dynamic = 1024.0, 7, True


class _FakeZero:
    """The interface of DeepSpeed's ZeRO stage 1/2 optimizer that checkpoints use."""

    def __init__(self):
        self.loss_scaler = _LossScaler()
        self.loaded = None

    def state_dict(self):
        return {
            "loss_scaler": self.loss_scaler,
            "zero_stage": _Stage.gradients,
            "param_slice_mappings": [object()],
            "single_partition_of_fp32_groups": [torch.arange(4.0)],
        }

    def load_state_dict(self, state_list, load_optimizer_states, load_from_fp32_weights):
        self.loaded = (state_list, load_optimizer_states, load_from_fp32_weights)


def test_zero_optimizer_state_round_trips_through_a_weights_only_load(tmp_path):
    saved = _FakeZero()
    saved.loss_scaler.cur_scale = 256.0
    torch.save(
        optimizer_state(SimpleNamespace(optimizer=saved, state_dict=saved.state_dict)),
        tmp_path / "optimizer.pt",
    )
    state = torch.load(tmp_path / "optimizer.pt", weights_only=True)
    fresh = _FakeZero()
    load_optimizer_state(SimpleNamespace(optimizer=fresh), state)
    (only,), load_states, from_fp32 = fresh.loaded
    assert load_states and from_fp32  # the float32 master weights come from the checkpoint
    assert only["zero_stage"] == 2 and "param_slice_mappings" not in only
    assert torch.equal(only["single_partition_of_fp32_groups"][0], torch.arange(4.0))
    assert (fresh.loss_scaler.cur_scale, fresh.loss_scaler.cur_iter) == (256.0, 7)


def test_plain_optimizer_state_is_unchanged():
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.AdamW([p], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    state = optimizer_state(opt)
    assert state.keys() == opt.state_dict().keys()
    other = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    load_optimizer_state(other, state)
    assert torch.equal(other.state_dict()["state"][0]["exp_avg"], opt.state[p]["exp_avg"])
