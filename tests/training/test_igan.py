"""training/igan.py and training/onnx_torch.py: the ONNX generator as a torch module against ONNX Runtime, the
exported gradient graph against torch autograd, the Sobel edges against SciPy, and a tiny run (resume, export)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from scipy import ndimage

import genrt
from genrt.errors import ArgumentError
from genrt.runtime import files
from training import igan
from training.loop import CheckpointError
from training.onnx_torch import OnnxModule


@pytest.fixture(scope="module")
def generator():
    return OnnxModule(files.resolve("dcgan-digits"))


def test_onnx_module_runs_the_bundled_generator_like_onnxruntime(generator):
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    sess = ort.InferenceSession(str(files.resolve("dcgan-digits")), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"z": z.numpy()})[0]
    np.testing.assert_allclose(generator(z).detach().numpy(), want, atol=1e-5)
    z.requires_grad_(True)
    generator(z).sum().backward()  # gradients flow to the input
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_onnx_module_names_an_unsupported_op(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Erf", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "erf.onnx"
    onnx.save(onnx.helper.make_model(graph), path)
    with pytest.raises(genrt.GenrtError, match="Erf"):
        OnnxModule(path)(torch.zeros(1, 4))


def test_edges_are_sobel_magnitudes():
    x = torch.rand(2, 1, 12, 12) * 2 - 1
    got = igan.edges(x).numpy()[:, 0]
    for i in range(2):
        a = x[i, 0].double().numpy()
        want = np.hypot(ndimage.sobel(a, axis=1), ndimage.sobel(a, axis=0)) / 8.0
        np.testing.assert_allclose(got[i, 1:-1, 1:-1], want[1:-1, 1:-1], atol=1e-3)
        assert (got[i, 0] == 0).all() and (got[i, :, -1] == 0).all()


@pytest.mark.parametrize("features", [True, False])
def test_exported_gradient_equals_autograd(generator, tmp_path, features):
    torch.manual_seed(0)
    objective = igan.Objective(generator, igan.Encoder(1, 32, 16, width=8), features)
    example = igan.objective_example(16, (1, 32, 32))
    path = tmp_path / "objective.onnx"
    igan.export_objective(objective, example, path)
    model = onnx.load(str(path))
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}  # standard ONNX only
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(5)
    for batch in (1, 6):  # a batch the trace never saw
        args = igan.objective_example(16, (1, 32, 32), batch=batch, seed=batch)
        z = (torch.randn(batch, 16, generator=g)).requires_grad_(True)
        loss, images = objective(z, *args[1:])
        (grad,) = torch.autograd.grad(loss.sum(), z)
        feeds = {n: a.numpy() for n, a in zip(igan.OBJECTIVE_INPUTS, (z.detach(), *args[1:]), strict=True)}
        o_loss, o_grad, o_images = sess.run(None, feeds)
        np.testing.assert_allclose(o_loss, loss.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(o_grad, grad.numpy(), rtol=1e-4, atol=1e-6 * float(grad.abs().max()))
        np.testing.assert_allclose(o_images, images.detach().numpy(), atol=1e-5)


def test_rewrite_leaves_no_convolution_backward(generator):
    from torch.fx.experimental.proxy_tensor import make_fx

    objective = igan.Objective(generator, igan.Encoder(1, 32, 16, width=8)).eval().requires_grad_(False)
    example = igan.objective_example(16, (1, 32, 32))

    def fn(z, *rest):
        return torch.func.grad(lambda z: objective(z, *rest)[0].sum())(z)

    gm = make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example)
    n = igan._input_gradient_as_convolution(gm)
    assert n == 4 + 3 + 1  # G's four transposed convolutions, E's three stages, the Sobel convolution
    assert not any(node.target == torch.ops.aten.convolution_backward.default for node in gm.graph.nodes)
    torch.testing.assert_close(gm(*example), fn(*example), rtol=1e-5, atol=1e-7)


def tiny(tmp_path, **kw):
    base = dict(generator="dcgan-digits", data="digits", out=str(tmp_path / "run"), steps=4, batch_size=4, width=4,
                ckpt_every=2, sample_every=100, progress=False, export=False, threads=1)  # fmt: skip
    return igan.IGANConfig(**{**base, **kw})


def test_training_resumes_exactly_and_exports_a_manipulator(tmp_path):
    _, e_full, _, _ = igan.train(tiny(tmp_path, out=str(tmp_path / "full")))

    def kill(step, *_):
        if step == 3:  # after the step-2 checkpoint: step 3 is lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        igan.train(tiny(tmp_path), on_step=kill)
    _, e_resumed, _, path = igan.train(tiny(tmp_path, resume=True, export=True))
    for a, b in zip(e_full.state_dict().values(), e_resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a.half().float(), b)  # the export rounded the resumed run's weights to float16
    m = genrt.load(path)
    assert m.kind == "manipulator" and m.latent_dim == 16 and m.image_size == (32, 32)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    np.testing.assert_allclose(m.encoder(x.numpy()), e_resumed(x).detach().numpy(), atol=1e-4)


def test_training_refuses_bad_inputs(tmp_path):
    with pytest.raises(ArgumentError, match="not a genrt generator"):
        igan.train(tiny(tmp_path, generator="inpaint-faces"))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.json").write_text("{not json")
    with pytest.raises((CheckpointError, genrt.GenrtError)):
        igan.train(tiny(tmp_path, resume=True))


def test_held_out_images_are_never_training_images():
    train = igan.training_images("faces", 32)
    held = igan.held_out_images("faces", 32)
    assert len(held) == 20 and len(train) == 160
    d = ((train[:, None] - held[None]) ** 2).flatten(2).mean(2)
    assert d.min() > 1e-4
    digits_train, digits_held = igan.training_images("digits", 32), igan.held_out_images("digits", 32)
    assert len(digits_train) == 1347 and len(digits_held) == 450
