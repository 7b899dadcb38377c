"""python -m training.dcgan --dataset digits --epochs 20 --out runs/dcgan-digits   (each paper's file calls train())

The one training loop the papers share: CLI config, data order, checkpoints and resume, NaN checks, samples,
multi-process data parallelism and the final export.

A paper file supplies a config dataclass (subclassing :class:`TrainConfig`) and ``build(cfg, image_shape, device)``
returning :class:`Parts`: its generator, discriminator, optimizers and a ``step`` that updates them on one real
minibatch. Everything else lives here, once.

Determinism and resume: the data order of epoch e is a permutation seeded with (seed, e) (DistributedSampler), and
before every step torch's RNG is seeded from (seed, rank, step), so the state a checkpoint must hold is exactly the
tensors (modules, optimizers) plus the step counter. A resumed run therefore reproduces the uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

import genrt
from genrt.errors import ArgumentError, GenrtError
from genrt.image import make_grid, save_png, to_uint8_images, write_atomic
from training import data as data_mod

__all__ = [
    "TrainConfig",
    "Parts",
    "DivergenceError",
    "CheckpointError",
    "parse_config",
    "train",
    "average_gradients",
    "update",
]

CHECKPOINT = "checkpoint.json"  # points at the tensor file; replaced last, so it never names a half-written file


class DivergenceError(GenrtError, FloatingPointError):
    """A loss or a parameter became NaN or infinite (or exploded): training diverged."""


class CheckpointError(GenrtError, ValueError):
    """A checkpoint is missing, unreadable, or does not match the run's config."""


@dataclass
class TrainConfig:
    dataset: str = "digits"  # digits, faces or folder:PATH
    train_images: int = 0  # train on the first N images only (0: all); digits 1347 keeps the last 450 unseen
    image_size: int = 32  # images are resized to image_size x image_size
    out: str = "runs/run"  # run folder: checkpoints, samples, config.json, generator.onnx
    epochs: int = 20  # passes over the data
    batch_size: int = 64  # per process
    latent_dim: int = 100  # size of z ~ N(0, 1)
    lr: float = 2e-4  # Adam learning rate, both players
    beta1: float = 0.5  # Adam beta1
    lr_decay: float = 0.0  # over this last fraction of the steps the learning rates fall linearly to 0 (0: constant)
    seed: int = 0  # seeds init, data order and noise; same seed -> same run on CPU
    max_steps: int = 0  # stop after this many steps (0: run all epochs); for smoke tests
    ckpt_every: int = 100  # steps between checkpoints (and at each epoch end)
    sample_every: int = 200  # steps between sample grids (and at the end)
    resume: bool = False  # continue from out/checkpoint.json if it exists
    export: bool = True  # export the generator to out/generator.onnx at the end
    description: str = ""  # one line stored in the export's metadata (genrt.list_models shows it)
    threads: int = 0  # torch threads per process (0: torch's default)
    device: str = "cpu"  # cpu or cuda (with torchrun: cuda:LOCAL_RANK)
    progress: bool = True  # tqdm progress bar on rank 0


# Fields a resumed run may change; anything else must match the checkpoint's config.
RESUMABLE = {
    "out",
    "epochs",
    "max_steps",
    "ckpt_every",
    "sample_every",
    "resume",
    "export",
    "threads",
    "device",
    "progress",
    "description",  # metadata only: resuming a finished run re-exports it with a corrected description
}


@dataclass
class Parts:
    """What a paper builds; ``step(real, step) -> {loss name: float}`` runs one minibatch update."""

    G: torch.nn.Module
    D: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    step: Callable[[torch.Tensor, int], dict[str, float]]
    extra: dict[str, torch.nn.Module] = field(default_factory=dict)  # other stateful modules to checkpoint
    before_export: Callable[[], None] | None = None  # e.g. freeze VBN reference statistics


# --- config from the command line -------------------------------------------------------------------------------


def _field_help(cls) -> dict[str, str]:
    """The trailing comment of each field, taken from the class sources, as its --help text."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        for line in inspect.getsource(klass).splitlines():
            m = re.match(r"\s+(\w+):[^#]*#\s*(.*)$", line)
            if m:
                helps[m.group(1)] = m.group(2)
    return helps


def parse_config(cls, argv=None, *, prog: str | None = None, example: str = ""):
    """A ``cls`` instance from ``--kebab-case`` flags, one per field; booleans also take ``--no-FLAG``."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__, epilog=f"example: {example}")
    helps = _field_help(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=helps.get(f.name))
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=f"{helps.get(f.name, '')} ({f.default!r})")
    args = parser.parse_args(argv)
    cfg = cls(**vars(args))
    cfg._given = {f.name for f in dataclasses.fields(cls) if getattr(args, f.name) != f.default}
    return cfg


# --- checkpoints: tensors in safetensors, everything else in JSON -----------------------------------------------


def _split(obj, prefix: str, tensors: dict):
    """Nested state -> JSON skeleton; tensors move to ``tensors`` under their path and leave a reference."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, _split(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join(obj, tensors: dict):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__items__"]}
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def _modules(parts: Parts) -> dict[str, torch.nn.Module]:
    return {"G": parts.G, "D": parts.D, **parts.extra}


def write_checkpoint(out: Path, modules: dict, optimizers: dict, *, step: int, meta: dict) -> Path:
    """Writes ckpt-STEP.safetensors (modules' and optimizers' state), then replaces checkpoint.json (the pointer,
    holding `meta` too) and removes older tensor files. Shared by every training script."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    state = {
        "modules": {k: _split(m.state_dict(), f"modules.{k}", tensors) for k, m in modules.items()},
        "optimizers": {k: _split(o.state_dict(), f"optimizers.{k}", tensors) for k, o in optimizers.items()},
    }
    name = f"ckpt-{step:08d}.safetensors"
    tmp = out / f".{name}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, out / name)
    record = {"step": step, **meta, "tensors": name, "state": state}
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_atomic(out / CHECKPOINT, (json.dumps(record, indent=1) + "\n").encode())
    for old in out.glob("ckpt-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return out / name


def read_checkpoint(out: Path, modules: dict, optimizers: dict) -> dict:
    """Restores modules and optimizers from out/checkpoint.json (see write_checkpoint); returns its JSON."""
    return _read_checkpoint(out, modules, optimizers)[0]


def checkpoint_modules(out: Path) -> dict[str, dict]:
    """The modules' state dicts in out/checkpoint.json, by name, without building them (to load into another shape)."""
    return _read_checkpoint(out, {}, {})[1]["modules"]


def _read_checkpoint(out: Path, modules: dict, optimizers: dict) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    try:
        meta = json.loads((out / CHECKPOINT).read_text())
        tensors = load_file(str(out / meta["tensors"]))
        state = _join(meta["state"], tensors)
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{out / CHECKPOINT}: cannot restore the checkpoint ({why})") from None
    return meta, state


def save_checkpoint(out: Path, parts: Parts, cfg: TrainConfig, *, step: int, epoch: int, batch: int) -> Path:
    """A checkpoint of a GAN-style run: its modules, optimizers, and where in the data order it stands."""
    meta = {
        "epoch": epoch,  # the epoch in progress
        "batch": batch,  # batches of that epoch already done
        "rng": {
            "data_order": "DistributedSampler(shuffle=True, seed=config.seed).set_epoch(epoch)",
            "per_step": "torch.manual_seed(step_seed(config.seed, rank, step)) before each step",
        },
        "config": _config_dict(cfg),
    }
    return write_checkpoint(out, _modules(parts), parts.optimizers, step=step, meta=meta)


def load_checkpoint(out: Path, parts: Parts) -> dict:
    """Restores modules and optimizers from out/checkpoint.json; returns its JSON (step, epoch, batch, config)."""
    return read_checkpoint(out, _modules(parts), parts.optimizers)


def _config_dict(cfg) -> dict:
    return asdict(cfg)


def _merge_resumed_config(cfg, saved: dict, resumable=RESUMABLE):
    """The checkpoint's config, with the fields a resumed run may change taken from the command line."""
    given = getattr(cfg, "_given", set())
    clash = [k for k in given - resumable if k in saved and saved[k] != getattr(cfg, k)]
    if clash:
        k = clash[0]
        raise CheckpointError(
            f"--resume: --{k.replace('_', '-')} {getattr(cfg, k)!r} differs from the checkpoint's {saved[k]!r}; "
            "start a new --out instead"
        )
    merged = type(cfg)(**{**saved, **{k: getattr(cfg, k) for k in resumable}})
    merged._given = given
    return merged


def resumed_config(cfg, out: Path, *, resumable=RESUMABLE, announce: bool = True):
    """(config, checkpoint JSON or None) for a run into `out`: a run already there needs --resume, and resuming
    takes the checkpoint's config except for the `resumable` fields given on the command line."""
    if not (out / CHECKPOINT).is_file():
        if cfg.resume and announce:
            print(f"--resume: no checkpoint in {out} yet, starting from step 0")
        return cfg, None
    if not cfg.resume:
        raise CheckpointError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    try:
        saved = json.loads((out / CHECKPOINT).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{out / CHECKPOINT}: cannot read the checkpoint ({exc})") from None
    return _merge_resumed_config(cfg, saved["config"], resumable), saved


# --- distributed --------------------------------------------------------------------------------------------------


def _world() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def average_gradients(module: torch.nn.Module) -> None:
    """Averages gradients over processes (one all-reduce of a flat buffer); a no-op in a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor, module: torch.nn.Module) -> None:
    """One player's step: gradients of ``loss``, averaged over processes, applied by ``optimizer``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(module)
    optimizer.step()


def _average_buffers(module: torch.nn.Module) -> None:
    # BatchNorm running statistics differ per process; average them before rank 0 saves or exports.
    if dist.is_initialized() and dist.get_world_size() > 1:
        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b /= dist.get_world_size()


def _check_in_sync(parts: Parts, step: int) -> None:
    # Every process applies the same averaged gradients, so the parameters must agree; check it at checkpoints.
    if dist.is_initialized() and dist.get_world_size() > 1:
        total = torch.stack([p.detach().double().sum() for m in (parts.G, parts.D) for p in m.parameters()]).sum()
        spread = torch.stack([total, -total])
        dist.all_reduce(spread, op=dist.ReduceOp.MAX)  # (max, -min) over processes
        if (spread[0] + spread[1]).abs() > 1e-6 * (1.0 + total.abs()):
            raise DivergenceError(f"step {step}: the processes' parameters differ; data-parallel training lost sync")


def lr_factor(step: int, total: int, decay: float) -> float:
    """1 until the last `decay` fraction of `total` steps, then falling linearly to 0 at the end."""
    span = decay * total
    return 1.0 if span <= 0 else min(1.0, max(0.0, (total - step) / span))


def _set_lr_factor(parts: Parts, base_lrs: dict, factor: float) -> None:
    for name, opt in parts.optimizers.items():
        for group, base in zip(opt.param_groups, base_lrs[name], strict=True):
            group["lr"] = base * factor


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729) % (2**63 - 1)


# --- the loop -----------------------------------------------------------------------------------------------------


def _check_finite(losses: dict[str, float], step: int, epoch: int, out: Path) -> None:
    for name, value in losses.items():
        if not math.isfinite(value) or abs(value) > 1e6:
            raise DivergenceError(
                f"step {step} (epoch {epoch}): {name} = {value}, training diverged; "
                f"lower --lr or resume from the last good checkpoint in {out}"
            )


def _check_params(parts: Parts, step: int) -> None:
    for mname, module in (("G", parts.G), ("D", parts.D)):
        for pname, p in module.named_parameters():
            if not torch.isfinite(p).all():
                raise DivergenceError(f"step {step}: parameter {mname}.{pname} is not finite, training diverged")


def run_steps(cfg, net: torch.nn.Module, step: int, train_step, save, preview, *, on_step=None, hint: str) -> dict:
    """The step loop of the one-network trainers (training/style.py, training/superres.py), from `step` to cfg.steps.

    Before each step torch's RNG is seeded from (cfg.seed, step), so ``train_step(step) -> {name: float}`` draws the
    same data on a resumed run as on an uninterrupted one. Non-finite losses raise DivergenceError (with `hint`, what
    to lower); every cfg.ckpt_every steps and at the end the parameters are checked and ``save(step)`` writes a
    checkpoint; every cfg.sample_every steps and at the end ``preview(step)`` writes a picture. ``on_step(step, net,
    losses)`` after each step (tests: crash, NaN). A tqdm bar when cfg.progress. Returns the last losses.
    """
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=Path(cfg.out).name, unit="step", dynamic_ncols=True)
    losses: dict[str, float] = {}
    started = time.time()
    net.train()
    while step < cfg.steps:
        torch.manual_seed(step_seed(cfg.seed, 0, step))
        losses = train_step(step)
        step += 1
        for k, v in losses.items():
            if not math.isfinite(v):
                raise DivergenceError(
                    f"step {step}: {k} = {v}, training diverged; {hint}, or resume from the last good checkpoint "
                    f"in {cfg.out}"
                )
        if on_step is not None:
            on_step(step, net, losses)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            for name, p in net.named_parameters():
                if not torch.isfinite(p).all():
                    raise DivergenceError(f"step {step}: parameter {name} is not finite, training diverged")
            save(step)
        if step % cfg.sample_every == 0 or step == cfg.steps:
            preview(step)
    if bar is not None:
        bar.close()
    print(f"{cfg.out}: {step} steps, {time.time() - started:.1f} s; last losses {json.dumps(losses)}")
    return losses


def _write_samples(G: torch.nn.Module, z: torch.Tensor, path: Path) -> None:
    was_training = G.training
    G.eval()
    with torch.no_grad():
        x = G(z).cpu().numpy()  # (N, C, H, W) in [-1, 1]
    G.train(was_training)
    save_png(path, make_grid(to_uint8_images(x), nrow=8))  # the runtime's conversion, as users will see them


def train(cfg: TrainConfig, build: Callable, *, on_step: Callable[[int, Parts, dict], None] | None = None) -> Parts:
    """Runs (or resumes) a training run as configured; returns the trained parts.

    ``on_step(step, parts, losses)`` is called after each step (tests use it to simulate a crash or inject a NaN).
    """
    rank, world, local_rank = _world()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cfg.device == "cuda" and world > 1 else cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
    cfg, saved = resumed_config(cfg, out, announce=rank == 0)

    dataset = data_mod.load(cfg.dataset, cfg.image_size)
    if cfg.train_images > 0:
        dataset = data_mod.Dataset(
            dataset.name,
            dataset.images[: cfg.train_images],
            None if dataset.labels is None else dataset.labels[: cfg.train_images],
            dataset.skipped,
        )
    if rank == 0 and dataset.skipped:
        print(f"{cfg.dataset}: skipped {len(dataset.skipped)} unreadable file(s): {dataset.skipped}")
    if len(dataset) < cfg.batch_size * world:
        raise ArgumentError(f"batch_size: {cfg.batch_size} x {world} processes exceeds the {len(dataset)} images")
    images = dataset.images.to(device)  # (N, C, H, W), small enough to keep whole
    sampler = torch.utils.data.DistributedSampler(
        range(len(dataset)), num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    per_epoch = len(sampler) // cfg.batch_size
    total = cfg.epochs * per_epoch if cfg.max_steps <= 0 else min(cfg.max_steps, cfg.epochs * per_epoch)

    torch.manual_seed(cfg.seed)  # the same init on every process
    parts = build(cfg, tuple(images.shape[1:]), device)
    base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in parts.optimizers.items()}
    step, epoch, batch = 0, 0, 0
    if saved is not None:
        meta = load_checkpoint(out, parts)
        step, epoch, batch = meta["step"], meta["epoch"], meta["batch"]
    if world > 1:
        for m in _modules(parts).values():
            for t in m.state_dict().values():
                dist.broadcast(t, 0)
    if rank == 0:
        write_atomic(out / "config.json", (json.dumps(_config_dict(cfg), indent=2) + "\n").encode())
    z_fixed = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 12345)).to(device)

    bar = None
    if rank == 0 and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=Path(cfg.out).name, unit="step", dynamic_ncols=True)
    losses: dict[str, float] = {}
    started = time.time()
    while step < total:
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        while batch < per_epoch and step < total:
            idx = order[batch * cfg.batch_size : (batch + 1) * cfg.batch_size]
            torch.manual_seed(step_seed(cfg.seed, rank, step))
            if cfg.lr_decay > 0:
                _set_lr_factor(parts, base_lrs, lr_factor(step, total, cfg.lr_decay))
            losses = parts.step(images[idx], step)
            step += 1
            batch += 1
            _check_finite(losses, step, epoch, out)
            if on_step is not None:
                on_step(step, parts, losses)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            end_of_epoch = batch == per_epoch
            if step % cfg.ckpt_every == 0 or end_of_epoch or step == total:
                _check_params(parts, step)
                next_epoch, next_batch = (epoch + 1, 0) if end_of_epoch else (epoch, batch)
                _check_in_sync(parts, step)
                _average_buffers(parts.G)
                _average_buffers(parts.D)
                if rank == 0:
                    save_checkpoint(out, parts, cfg, step=step, epoch=next_epoch, batch=next_batch)
                if world > 1:
                    dist.barrier()
            if rank == 0 and (step % cfg.sample_every == 0 or step == total):
                _write_samples(parts.G, z_fixed, out / "samples" / f"step_{step:08d}.png")
        if batch == per_epoch:
            epoch, batch = epoch + 1, 0
    if bar is not None:
        bar.close()
    seconds = time.time() - started
    if rank == 0:
        print(f"{cfg.out}: {step} steps, {seconds:.1f} s; last losses {json.dumps(losses)}")
        if cfg.export:
            export_generator(parts, cfg, dataset.name, out / "generator.onnx")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return parts


def export_generator(parts: Parts, cfg: TrainConfig, dataset: str, path: Path) -> Path:
    """Exports G (eval mode) to ``path`` with the config, dataset and description in its metadata."""
    if parts.before_export is not None:
        parts.before_export()
    G = parts.G.cpu().eval()
    z = torch.randn(2, cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    meta = {"config": _config_dict(cfg), "dataset": dataset}
    if cfg.description:
        meta["description"] = cfg.description
    return genrt.export(G, path, z, kind="generator", metadata=meta)
