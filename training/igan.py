"""Generative visual manipulation (Zhu et al. 2016, iGAN): the projection encoder, the objective's gradient graph,
and the manipulator file that genrt's runtime edits with, torch-free.

    python -m training.igan --generator dcgan-digits --data digits --out runs/igan-digits

Pieces (the paper's section in brackets):
- **Generator** G: an exported genrt generator (bundled name or .onnx), run here as a frozen torch module
  (training.onnx_torch) so gradients flow through it.
- **Encoder** E [3.2]: a small all-convolutional network trained to invert G: on G's own samples (image and latent
  loss) and on real training images (image loss), ``||G(E(x)) - x||^2`` plus the feature term below.
- **Features** F: E's own convolutional features (its second and third stages). The paper uses AlexNet conv4 on
  64x64 colour photos; genrt's generators make 32x32 grey digits and faces, where an ImageNet network sees a
  few blurry pixels, while E's features are trained on exactly this domain and cost nothing more to ship.
- **Objective** [3.2, 4], one graph for projection and edits, per start n:

      f(z_n) = sum(Wp * (G(z_n) - T)^2) + sum(We * (edge(G(z_n)) - Te)^2) + a * mean((F(G(z_n)) - F(T))^2)
               + b * ||z_n - z_anchor||^2 + c * (||z_n|| / sqrt(d) - 1)^2

  Projection: T the photo, Wp uniform, a > 0. Colour strokes: T the stroke colours, Wp the stroke mask. Sketch
  strokes: Te the sketched lines, We their mask; edge() is the Sobel gradient magnitude. b keeps an edit near the
  projection z0, c near the prior's shell.
- **Gradient graph**: ``torch.func.grad_and_value`` of f traced with make_fx (symbolic batch), each
  ``aten.convolution_backward`` (input gradient only) rewritten into the ordinary (transposed) convolution it
  equals, exported to standard ONNX and checked against autograd on export.
- **Manipulator file** (NAME.genrt): a zip of encoder.onnx, projection.onnx (the gradient graph with the feature
  term), edit.onnx (without it; its images output is also how the runtime runs G) and manifest.json, nothing
  executable; ``genrt.load`` returns a :class:`genrt.apps.manipulate.Manipulator`.
"""

from __future__ import annotations

import json
import operator
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrt.errors import ArgumentError, ExportError
from genrt.runtime import files
from training import data as data_mod
from training.onnx_torch import OnnxModule

HELD_OUT = {"digits": data_mod.HELD_OUT_DIGITS, "faces": data_mod.HELD_OUT_FACES}  # never trained on
FEATURE_WEIGHT = 0.1  # a: the feature term's weight in projection (its terms are means, the pixel term a sum)
OPSET = 18


# ---------------------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """images (N, C, S, S) in [-1, 1] -> latents (N, d); ``features(x)`` the stages F uses."""

    def __init__(self, channels: int, size: int, latent_dim: int, width: int = 32):
        super().__init__()
        self.stages = nn.ModuleList()
        cin, s = channels, size
        for i in range(3):
            cout = width * 2**i
            self.stages.append(nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)))
            cin, s = cout, s // 2
        self.head = nn.Linear(cin * s * s, latent_dim)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1].flatten(1))


SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0  # a -1 -> 1 step reads 1.0


def edges(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W) Sobel gradient magnitude of the channel mean (0 on the one-pixel border)."""
    g = x.mean(1, keepdim=True)
    k = torch.stack([SOBEL, SOBEL.t()])[:, None].to(x)
    d = F.conv2d(g, k)
    return F.pad(torch.sqrt((d * d).sum(1, keepdim=True) + 1e-6), (1, 1, 1, 1))


class Objective(nn.Module):
    """f above: inputs (z (N, d), target (1, C, H, W), pixel_weight (1, 1, H, W), edge_target (1, 1, H, W),
    edge_weight (1, 1, H, W), anchor (1, d), coefs (3,) = [a, b, c]) -> (loss (N,), images (N, C, H, W)).

    ``features=False`` leaves the feature term out (a is ignored): the edit graph, five times cheaper per step than
    the projection graph, whose feature term runs E's stages forward and backward."""

    def __init__(self, generator: nn.Module, encoder: Encoder, features: bool = True):
        super().__init__()
        self.generator, self.encoder, self.use_features = generator, encoder, features

    def forward(self, z, target, pixel_weight, edge_target, edge_weight, anchor, coefs):
        images = self.generator(z)
        pixel = (pixel_weight * (images - target) ** 2).sum((1, 2, 3))
        edge = (edge_weight * (edges(images) - edge_target) ** 2).sum((1, 2, 3))
        shell = (torch.sqrt((z * z).sum(1) / z.shape[1] + 1e-8) - 1.0) ** 2  # the normal prior's mass: |z| ~ sqrt(d)
        loss = pixel + edge + coefs[1] * ((z - anchor) ** 2).sum(1) + coefs[2] * shell
        if self.use_features:
            feats = self.encoder.features(torch.cat([images, target]))
            n = z.shape[0]
            loss = loss + coefs[0] * sum(((f[:n] - f[n:]) ** 2).mean((1, 2, 3)) for f in feats[1:])
        return loss, images


OBJECTIVE_INPUTS = ["z", "target", "pixel_weight", "edge_target", "edge_weight", "anchor", "coefs"]
OBJECTIVE_OUTPUTS = ["loss", "grad", "images"]


# ---------------------------------------------------------------------------------------------------------------
# The gradient graph
# ---------------------------------------------------------------------------------------------------------------


def _input_gradient_as_convolution(gm: torch.fx.GraphModule) -> int:
    """Rewrites every aten.convolution_backward whose only used output is the input gradient into the
    convolution it equals (a convolution's input gradient is the transposed convolution with the same weight, and
    the other way round). Returns how many it rewrote."""
    aten = torch.ops.aten
    count = 0
    for node in list(gm.graph.nodes):
        if node.target != aten.convolution_backward.default:
            continue
        grad_out, inp, weight, _, stride, padding, dilation, transposed, output_padding, groups, mask = node.args
        if list(mask) != [True, False, False] or groups != 1:
            raise ExportError(
                f"convolution_backward with mask {mask}, groups {groups}: only the input gradient of "
                "an ungrouped convolution is rewritten"
            )
        uses = list(node.users)
        if any(u.target is not operator.getitem or (u.args[1] != 0 and u.users) for u in uses):
            raise ExportError("convolution_backward: an output other than the input gradient is used")
        in_size = inp.meta["val"].shape[2:]
        out_size = grad_out.meta["val"].shape[2:]
        k = weight.meta["val"].shape[2:]
        with gm.graph.inserting_before(node):
            if transposed:  # forward was a transposed convolution: its input gradient is a convolution
                new = gm.graph.call_function(
                    aten.convolution.default, (grad_out, weight, None, stride, padding, dilation, False, [0, 0], 1)
                )
            else:  # forward was a convolution: its input gradient is a transposed one, output_padding to fit
                op = [
                    int(in_size[i])
                    - ((int(out_size[i]) - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k[i] - 1) + 1)
                    for i in range(2)
                ]
                new = gm.graph.call_function(
                    aten.convolution.default, (grad_out, weight, None, stride, padding, dilation, True, op, 1)
                )
        for u in uses:
            if u.args[1] == 0:
                u.replace_all_uses_with(new)
            gm.graph.erase_node(u)
        gm.graph.erase_node(node)
        count += 1
    gm.graph.lint()
    gm.recompile()
    return count


class _GradientGraph(nn.Module):
    """The traced, rewritten (loss, grad, images) function as a module torch.onnx.export can take."""

    def __init__(self, gm: torch.fx.GraphModule):
        super().__init__()
        self.gm = gm

    def forward(self, *args):
        return self.gm(*args)


def objective_example(latent_dim: int, image_shape, batch: int = 3, seed: int = 0):
    """Example inputs of the objective graph (random, all terms on)."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = image_shape
    return (
        torch.randn(batch, latent_dim, generator=g),
        torch.rand(1, c, h, w, generator=g) * 2 - 1,
        torch.rand(1, 1, h, w, generator=g) / (h * w),
        torch.rand(1, 1, h, w, generator=g),
        torch.rand(1, 1, h, w, generator=g) / (h * w),
        torch.randn(1, latent_dim, generator=g),
        torch.tensor([FEATURE_WEIGHT, 0.01, 0.001]),
    )


def export_objective(objective: Objective, example: tuple, path: Path) -> float:
    """Writes the objective's (loss, grad, images) graph to ``path`` (standard ONNX, dynamic batch) and returns its
    largest gradient difference from torch autograd, relative to the gradient's scale (ExportError over 1e-4)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    objective.eval().requires_grad_(False)

    def loss_sum(z, *rest):
        loss, images = objective(z, *rest)
        return loss.sum(), (loss, images)

    def fn(z, *rest):
        grad, (_, (loss, images)) = torch.func.grad_and_value(loss_sum, has_aux=True)(z, *rest)
        return loss, grad, images

    gm = make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example)
    if _input_gradient_as_convolution(gm) == 0:
        raise ExportError("the objective's trace has no convolution_backward: nothing was rewritten")
    batch = torch.export.Dim("batch", min=1, max=256)
    dynamic = [{0: batch}] + [None] * (len(example) - 1)
    program = torch.onnx.export(
        _GradientGraph(gm),
        example,
        dynamo=True,
        input_names=OBJECTIVE_INPUTS,
        output_names=OBJECTIVE_OUTPUTS,
        dynamic_shapes=(tuple(dynamic),),
        opset_version=OPSET,
        optimize=True,
    )
    program.save(str(path))
    return verify_objective(objective, path, example)


def verify_objective(objective: Objective, path: Path, example: tuple) -> float:
    """The ONNX graph's (loss, grad) against autograd on ``example`` and on a batch of 7; returns the largest
    relative gradient difference."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for args in (example, (torch.randn(7, example[0].shape[1]), *example[1:])):
        z = args[0].clone().requires_grad_(True)
        loss, images = objective(z, *args[1:])
        (grad,) = torch.autograd.grad(loss.sum(), z)
        feeds = {n: a.numpy() for n, a in zip(OBJECTIVE_INPUTS, args, strict=True)}
        o_loss, o_grad, o_images = sess.run(OBJECTIVE_OUTPUTS, feeds)
        scale = float(grad.abs().max()) + 1e-12
        worst = max(worst, float(np.abs(o_grad - grad.numpy()).max()) / scale)
        if not np.allclose(o_loss, loss.detach().numpy(), rtol=1e-4, atol=1e-5) or not np.allclose(
            o_images, images.detach().numpy(), atol=1e-5
        ):
            raise ExportError(f"{path}: the objective graph's loss or images differ from torch")
    if worst > 1e-4:
        raise ExportError(f"{path}: the ONNX gradient differs from autograd by {worst:.2e} (relative)")
    return worst


# ---------------------------------------------------------------------------------------------------------------
# Training the encoder
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class IGANConfig:
    generator: str = "dcgan-digits"  # bundled generator name or .onnx path (a genrt generator, standard ops)
    data: str = "digits"  # real images E also learns to invert: digits, faces or folder:PATH (never the held-out)
    out: str = "runs/igan"  # run folder: checkpoints, samples, manipulator.genrt
    steps: int = 4000  # optimizer steps
    batch_size: int = 64  # generated and real images per step (each)
    width: int = 32  # E's first stage width (doubles per stage)
    lr: float = 1e-3  # Adam learning rate (cosine decay to a tenth)
    latent_weight: float = 0.5  # weight of ||E(G(z)) - z||^2 / d on G's samples
    seed: int = 0  # seeds init, data order and noise
    ckpt_every: int = 500  # steps between checkpoints
    sample_every: int = 1000  # steps between preview grids
    resume: bool = False  # continue from out/checkpoint.json
    export: bool = True  # write out/manipulator.genrt at the end
    description: str = ""  # one line in the manifest (genrt.list_models shows it)
    threads: int = 0  # torch threads (0: torch's default)
    progress: bool = True  # tqdm progress bar


RESUMABLE = {"out", "steps", "ckpt_every", "sample_every", "resume", "export", "description", "threads", "progress"}


def training_images(spec: str, size: int) -> torch.Tensor:
    """The real images E trains on, (N, 1 or 3, size, size) in [-1, 1]: the held-out ones left out."""
    x = data_mod.load(spec, size).images
    if spec == "faces":  # 100 faces then their mirrors: drop the held-out faces from both halves
        half = len(x) // 2
        return torch.cat([x[: half - HELD_OUT["faces"]], x[half : 2 * half - HELD_OUT["faces"]]])
    return x[: -HELD_OUT[spec]] if spec in HELD_OUT else x


def held_out_images(spec: str, size: int) -> torch.Tensor:
    """The held-out digits or faces (no mirrors), never trained on by G's run or E's."""
    x = data_mod.load(spec, size).images
    if spec == "faces":
        return x[len(x) // 2 - HELD_OUT["faces"] : len(x) // 2]
    return x[-HELD_OUT[spec] :]


def load_generator(name_or_path) -> tuple[OnnxModule, dict]:
    """The exported generator as a frozen torch module, and its genrt metadata."""
    from genrt.runtime.onnx_session import load_onnx, onnx_metadata

    path = files.resolve(name_or_path)
    meta = onnx_metadata(load_onnx(path))
    if meta.get("kind") != "generator":
        raise ArgumentError(f"generator: {path} is a {meta.get('kind')!r} model, not a genrt generator")
    if list(meta.get("output_range", [-1.0, 1.0])) != [-1.0, 1.0]:
        raise ArgumentError(f"generator: {path} must output images in [-1, 1]")
    return OnnxModule(path), {**meta, "path": str(path)}


def _sample_z(n: int, d: int, prior: str) -> torch.Tensor:
    return torch.rand(n, d) * 2 - 1 if prior == "uniform" else torch.randn(n, d)


def train(cfg: IGANConfig, *, on_step=None):
    """Trains (or resumes) E for cfg.generator; returns (G, E, metadata, path of the manipulator or None)."""
    from genrt.image import make_grid, save_png, write_atomic
    from training.loop import read_checkpoint, resumed_config, run_steps, write_checkpoint

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    cfg, saved = resumed_config(cfg, out, resumable=RESUMABLE)
    G, gmeta = load_generator(cfg.generator)
    d, prior = int(gmeta["latent_dim"]), gmeta.get("latent_prior", "normal")
    with torch.no_grad():
        c, size, _ = G(torch.zeros(1, d)).shape[1:]
    real = training_images(cfg.data, size)
    if real.shape[1] != c:
        real = real.mean(1, keepdim=True) if c == 1 else real.expand(-1, c, -1, -1)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    E = Encoder(c, size, d, cfg.width)
    opt = torch.optim.Adam(E.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    step = 0
    if saved is not None:
        step = read_checkpoint(out, {"E": E}, {"opt": opt})["step"]
    write_atomic(out / "config.json", (json.dumps(asdict(cfg), indent=2) + "\n").encode())
    preview = held_out_images(cfg.data, size)[:16]
    preview = preview.mean(1, keepdim=True) if c == 1 and preview.shape[1] != 1 else preview

    def train_step(step: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (0.55 + 0.45 * np.cos(np.pi * step / cfg.steps))
        z = _sample_z(cfg.batch_size, d, prior)
        with torch.no_grad():
            fake = G(z)
        x = real[torch.randint(len(real), (cfg.batch_size,))]
        z_hat = E(torch.cat([fake, x]))
        rec = G(z_hat)
        loss_fake = ((rec[: cfg.batch_size] - fake) ** 2).mean()
        loss_real = ((rec[cfg.batch_size :] - x) ** 2).mean()
        loss_z = ((z_hat[: cfg.batch_size] - z) ** 2).mean()
        loss = loss_fake + loss_real + cfg.latent_weight * loss_z
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"fake": loss_fake.item(), "real": loss_real.item(), "z": loss_z.item()}

    def save(step: int) -> None:
        meta = {"rng": "torch.manual_seed(step_seed(config.seed, 0, step)) before each step", "config": asdict(cfg)}
        write_checkpoint(out, {"E": E}, {"opt": opt}, step=step, meta=meta)

    def write_preview(step: int) -> None:
        with torch.no_grad():
            rec = G(E(preview))
        grid = torch.stack([preview, rec], 1).flatten(0, 1)
        u8 = ((grid + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        save_png(out / "samples" / f"step_{step:08d}.png", make_grid(u8, nrow=8))

    run_steps(cfg, E, step, train_step, save, write_preview, on_step=on_step, hint="lower --lr")
    meta = {"generator": gmeta, "data": cfg.data, "config": asdict(cfg)}
    path = export_manipulator(G, E, meta, out / "manipulator.genrt", cfg.description) if cfg.export else None
    return G, E, meta, path


# ---------------------------------------------------------------------------------------------------------------
# The manipulator file
# ---------------------------------------------------------------------------------------------------------------


def _round_float16(module: nn.Module) -> None:
    """Rounds the module's float32 weights (rank >= 1) to float16 precision in place, as store_float16_weights
    stores them, so the torch module and the files compute the same."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.dtype == torch.float32 and t.dim() >= 1:
                t.copy_(t.half().float())


class _OneInput(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


def _export_plain(module: nn.Module, example: torch.Tensor, input_name: str, output_name: str, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        _OneInput(module).eval(), (example,), dynamo=True, input_names=[input_name], output_names=[output_name],
        dynamic_shapes=({0: batch},), opset_version=OPSET, optimize=True,
    )  # fmt: skip
    program.save(str(path))


def _float16_file(path: Path) -> bytes:
    import onnx

    from genrt.exporter import store_float16_weights

    model = onnx.load(str(path))
    store_float16_weights(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_manipulator(G: OnnxModule, E: Encoder, meta: dict, path: Path, description: str = "") -> Path:
    """Writes NAME.genrt: encoder.onnx (images -> z), projection.onnx and edit.onnx (the objective's (loss, grad,
    images) graphs with and without the feature term), float16-stored weights, and manifest.json; each graph is
    checked against torch (the gradients against autograd)."""
    import io
    import tempfile

    import onnxruntime as ort

    from genrt.image import write_atomic

    G, E = G.cpu().eval(), E.cpu().eval()
    _round_float16(G)
    _round_float16(E)
    gmeta = meta["generator"]
    d = int(gmeta["latent_dim"])
    z = torch.randn(4, d, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = G(z)
    c, h, w = images.shape[1:]
    members, grad_error = {}, 0.0
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _export_plain(E, images, "images", "z", tmp / "encoder.onnx")
        members["encoder.onnx"] = _float16_file(tmp / "encoder.onnx")
        for name, features in (("projection", True), ("edit", False)):
            objective = Objective(G, E, features)
            example = objective_example(d, (c, h, w))
            grad_error = max(grad_error, export_objective(objective, example, tmp / f"{name}.onnx"))
            members[f"{name}.onnx"] = _float16_file(tmp / f"{name}.onnx")
            (tmp / f"{name}16.onnx").write_bytes(members[f"{name}.onnx"])
            grad_error = max(grad_error, verify_objective(objective, tmp / f"{name}16.onnx", example))
    with torch.no_grad():
        sess = ort.InferenceSession(members["encoder.onnx"], providers=["CPUExecutionProvider"])
        if not np.allclose(sess.run(None, {"images": images.numpy()})[0], E(images).numpy(), atol=1e-4, rtol=1e-4):
            raise ExportError("encoder.onnx: the exported graph differs from torch")
    manifest = {
        "kind": "manipulator",
        "format": 1,
        "graphs": {"encoder": "encoder.onnx", "projection": "projection.onnx", "edit": "edit.onnx"},
        "latent_dim": d,
        "latent_prior": gmeta.get("latent_prior", "normal"),
        "image_shape": [int(c), int(h), int(w)],
        "output_range": [-1.0, 1.0],
        "feature_weight": FEATURE_WEIGHT,
        "objective_inputs": OBJECTIVE_INPUTS,
        "objective_outputs": OBJECTIVE_OUTPUTS,
        "gradient_check": {"max_relative_error_vs_autograd": grad_error},
        "generator_source": Path(gmeta["path"]).name,
        "dataset": meta["data"],
        "config": meta["config"],
        "description": description
        or f"iGAN manipulator (Zhu et al. 2016) of {Path(gmeta['path']).stem}: projection encoder, edits",
        "export_seconds": round(time.time() - started, 1),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        for name, blob in members.items():
            zf.writestr(name, blob)
    write_atomic(path, buf.getvalue())
    print(f"{path}: {len(buf.getvalue()) / 1e6:.2f} MB, gradient vs autograd {grad_error:.1e} (relative)")
    return path


def main(argv=None) -> None:
    from genrt.errors import GenrtError
    from training.loop import parse_config

    cfg = parse_config(
        IGANConfig,
        argv,
        prog="python -m training.igan",
        example="python -m training.igan --generator dcgan-digits --data digits --out runs/igan-digits",
    )
    try:
        train(cfg)
    except GenrtError as exc:
        raise SystemExit(f"python -m training.igan: {exc}") from None


if __name__ == "__main__":
    main()
