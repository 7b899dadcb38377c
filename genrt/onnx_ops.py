"""genrt's ops at the ONNX level (domain ``genrt``): their schemas, and their decompositions into standard ops.

No torch here: the runtime uses the decompositions when genrt's ORT custom-op library is not built, and the
exporter uses the schemas so that native files pass ``onnx.checker`` and shape inference.
"""

from __future__ import annotations

import threading

import onnx
from onnx import defs, helper

DOMAIN = "genrt"
VERSION = 1
# Standard opset the decompositions are written against.
STANDARD_OPSET = 18

_registered = False
_lock = threading.Lock()


def register_schemas() -> None:
    """Registers the genrt-domain op schemas with onnx, once per process."""
    global _registered
    with _lock:
        if _registered:
            return
        T = ("T", ["tensor(float)", "tensor(double)"], "float32 or float64")
        F = ("F", ["tensor(float)"], "float32")
        D = ("D", ["tensor(double)"], "float64")
        param = defs.OpSchema.FormalParameter
        attr = defs.OpSchema.Attribute
        INT = defs.OpSchema.AttrType.INT
        INTS = defs.OpSchema.AttrType.INTS
        optional = defs.OpSchema.FormalParameterOption.Optional
        stats = param("stats", "D", "(N, C, 2): each plane's (mean, variance), when known", param_option=optional)

        def conv_attributes():  # genrt.Conv's and genrt.ConcatConv's
            return [
                attr("pads", INTS, "[top, left, bottom, right]: top/bottom < kH, left/right < kW", required=False),
                attr("strides", INTS, "[sh, sw], each 1..8; default [1, 1]", required=False),
                attr("padding_mode", defs.OpSchema.AttrType.STRING, "zeros|reflect|edge", required=False),
                attr("activation", defs.OpSchema.AttrType.STRING, "none|relu|leaky_relu", required=False),
                attr("alpha", defs.OpSchema.AttrType.FLOAT, "leaky_relu slope; default 0.01", required=False),
                attr(
                    "precision",
                    defs.OpSchema.AttrType.STRING,
                    "f32 (default) | bf16: X and W rounded to bfloat16, float32 sums",
                    required=False,
                ),
            ]

        schemas = [
            defs.OpSchema(
                "MinibatchDiscrimination",
                DOMAIN,
                VERSION,
                doc="o[i, b] = sum_{j != i} exp(-||M[i, b, :] - M[j, b, :]||_1); M (N, B, C) -> o (N, B).",
                inputs=[param("M", "T", "(N, B, C)")],
                outputs=[param("o", "T", "(N, B)")],
                type_constraints=[T],
                attributes=[attr("threads", INT, "kernel threads (0: all CPUs); set by genrt.load", required=False)],
            ),
            defs.OpSchema(
                "Conv",
                DOMAIN,
                VERSION,
                doc="ONNX Pad(mode) then Conv (kH x kW, strides, group 1), + B, then optional relu or leaky relu, "
                "in one pass.",
                inputs=[
                    param("X", "T", "(N, C_in, H, W)"),
                    param("W", "T", "(C_out, C_in, kH, kW), kH and kW 1..16"),
                    param("B", "T", "(C_out,)", param_option=optional),
                    param("A", "F", "(N, C_in, 2): a x + b per input plane, before padding", param_option=optional),
                    param("R", "T", "Y's shape: added to Y after the activation", param_option=optional),
                ],
                outputs=[
                    param("Y", "T", "(N, C_out, (H + top + bottom - kH) / sh + 1, (W + left + right - kW) / sw + 1)"),
                    param("S", "D", "(N, C_out, 2): each output plane's (mean, variance)", param_option=optional),
                ],
                type_constraints=[T, F, D],
                attributes=[
                    *conv_attributes(),
                    attr("input_activation", defs.OpSchema.AttrType.STRING, "none|relu, after A", required=False),
                    attr("threads", INT, "kernel threads; set by genrt.load", required=False),
                ],
            ),
            defs.OpSchema(
                "InstanceNormAffine",
                DOMAIN,
                VERSION,
                doc="Per (n, c) plane of X, (a, b) = (scale / sqrt(var + epsilon), bias - mean a): the instance norm "
                "a genrt.Conv applies to its input (its input A).",
                inputs=[
                    param("X", "F", "(N, C, H, W)"),
                    param("scale", "F", "C or N x C values, as InstanceNorm's", param_option=optional),
                    param("bias", "F", "like scale", param_option=optional),
                    stats,
                ],
                outputs=[param("A", "F", "(N, C, 2)")],
                type_constraints=[F, D],
                attributes=[
                    attr("epsilon", defs.OpSchema.AttrType.FLOAT, "default 1e-5", required=False),
                    attr("threads", INT, "kernel threads; set by genrt.load", required=False),
                ],
            ),
            defs.OpSchema(
                "ConcatConv",
                DOMAIN,
                VERSION,
                doc="genrt.Conv over Concat(X_1 .. X_k, axis 1), the concatenation never written.",
                inputs=[
                    param("W", "T", "(C_out, sum of C_i, kH, kW)"),
                    param("B", "T", "(C_out,)"),
                    param(
                        "X",
                        "T",
                        "X_1 .. X_k, (N, C_i, H, W)",
                        param_option=defs.OpSchema.FormalParameterOption.Variadic,
                    ),
                ],
                outputs=[param("Y", "T", "as genrt.Conv's")],
                type_constraints=[T],
                attributes=[
                    *conv_attributes(),
                    attr("residual", INT, "1: the first variadic input is R, as genrt.Conv's", required=False),
                    attr("threads", INT, "kernel threads; set by genrt.load", required=False),
                ],
            ),
            defs.OpSchema(
                "FillSweeps",
                DOMAIN,
                VERSION,
                doc="count Jacobi sweeps of a hole fill: y = V + A conv(edge_pad(y), W) (replace) or "
                "y = V + A (y + damping (conv(edge_pad(y), W) / divisor - y)) (relax).",
                inputs=[
                    param("X", "T", "(N, C, H, W): the fill to start from"),
                    param("V", "T", "(N, C, H, W): the known values"),
                    param("A", "T", "(N | 1, C | 1, H, W): the unknown share"),
                    param("W", "T", "(C, 1, k, k): a depthwise stencil, k odd"),
                ],
                outputs=[param("Y", "T", "(N, C, H, W)")],
                type_constraints=[T],
                attributes=[
                    attr("count", INT, "sweeps; default 1", required=False),
                    attr("mode", defs.OpSchema.AttrType.STRING, "replace|relax", required=False),
                    attr("divisor", defs.OpSchema.AttrType.FLOAT, "relax: the stencil's divisor", required=False),
                    attr("damping", defs.OpSchema.AttrType.FLOAT, "relax: the step", required=False),
                    attr("threads", INT, "kernel threads; set by genrt.load", required=False),
                ],
            ),
            defs.OpSchema(
                "Resize",
                DOMAIN,
                VERSION,
                doc="ONNX Resize in linear, cubic or nearest mode (no antialias, exclude_outside 0) of dims H and W "
                "by fixed scales.",
                inputs=[param("X", "T", "(N, C, H, W)")],
                outputs=[param("Y", "T", "(N, C, floor(H scales[0]), floor(W scales[1]))")],
                type_constraints=[T],
                attributes=[
                    attr("scales", defs.OpSchema.AttrType.FLOATS, "[h, w], each > 0"),
                    attr("mode", defs.OpSchema.AttrType.STRING, "linear|cubic|nearest", required=False),
                    attr(
                        "coordinate_transformation_mode",
                        defs.OpSchema.AttrType.STRING,
                        "half_pixel (default)|pytorch_half_pixel|align_corners|asymmetric",
                        required=False,
                    ),
                    attr("cubic_coeff_a", defs.OpSchema.AttrType.FLOAT, "default -0.75", required=False),
                    attr("nearest_mode", defs.OpSchema.AttrType.STRING, "as ONNX Resize's", required=False),
                    attr("threads", INT, "kernel threads; set by genrt.load", required=False),
                ],
            ),
            defs.OpSchema(
                "InstanceNorm",
                DOMAIN,
                VERSION,
                doc="act((X - mean) / sqrt(var + epsilon) * scale + bias + residual), mean and var per (n, c) plane.",
                inputs=[
                    param("X", "T", "(N, C, H, W)"),
                    param("scale", "T", "C or N x C values: (C,), (N, C), (1 | N, C, 1, 1)", param_option=optional),
                    param("bias", "T", "like scale", param_option=optional),
                    param("residual", "T", "X's shape, or one that broadcasts to it", param_option=optional),
                    stats,
                ],
                outputs=[param("Y", "T", "(N, C, H, W)")],
                type_constraints=[T, D],
                attributes=[
                    attr(
                        "epsilon", defs.OpSchema.AttrType.FLOAT, "added to the variance; default 1e-5", required=False
                    ),
                    attr("activation", defs.OpSchema.AttrType.STRING, "none|relu", required=False),
                    attr("threads", INT, "kernel threads; set by genrt.load", required=False),
                ],
            ),
            defs.OpSchema(
                "ConvTranspose",
                DOMAIN,
                VERSION,
                doc="ONNX ConvTranspose, then act((y + B) * scale + shift) per output channel, in one pass.",
                inputs=[
                    param("X", "T", "(N, C_in, H, W)"),
                    param("W", "T", "(C_in, C_out / group, kH, kW)"),
                    param("B", "T", "(C_out,)", param_option=optional),
                    param("scale", "T", "(C_out,): a folded BatchNormalization", param_option=optional),
                    param("shift", "T", "(C_out,)", param_option=optional),
                ],
                outputs=[param("Y", "T", "(N, C_out, H_out, W_out)")],
                type_constraints=[T],
                attributes=[
                    attr("strides", INTS, "(sh, sw)", required=False),
                    attr("pads", INTS, "[top, left, bottom, right], symmetric", required=False),
                    attr("output_padding", INTS, "(oph, opw)", required=False),
                    attr("dilations", INTS, "(dh, dw)", required=False),
                    attr("group", INT, "groups", required=False),
                    attr(
                        "activation",
                        defs.OpSchema.AttrType.STRING,
                        "none|relu|leaky_relu|tanh|sigmoid",
                        required=False,
                    ),
                    attr("alpha", defs.OpSchema.AttrType.FLOAT, "leaky_relu slope", required=False),
                    attr(
                        "precision",
                        defs.OpSchema.AttrType.STRING,
                        "f32 (default) | bf16: X and W rounded to bfloat16, float32 sums (CPU, group 1)",
                        required=False,
                    ),
                    attr("threads", INT, "kernel threads; set by genrt.load", required=False),
                ],
            ),
        ]
        for schema in schemas:
            try:
                defs.register_schema(schema)
            except Exception:  # already registered by another copy of genrt in this process
                pass
        _registered = True


def minibatch_discrimination_function(opset: int = STANDARD_OPSET) -> onnx.FunctionProto:
    """genrt.MinibatchDiscrimination written with standard ops (materialises the (N, N, B, C) broadcast).

    The ops used mean the same from opset 18 on; `opset` matches the model's, so the function can be inlined.
    """
    nodes = [
        helper.make_node("Constant", [], ["axis0"], value_ints=[0]),
        helper.make_node("Constant", [], ["axis1"], value_ints=[1]),
        helper.make_node("Constant", [], ["axis3"], value_ints=[3]),
        helper.make_node("Unsqueeze", ["M", "axis1"], ["Mi"]),  # (N, 1, B, C)
        helper.make_node("Unsqueeze", ["M", "axis0"], ["Mj"]),  # (1, N, B, C)
        helper.make_node("Sub", ["Mi", "Mj"], ["diff"]),
        helper.make_node("Abs", ["diff"], ["absdiff"]),
        helper.make_node("ReduceSum", ["absdiff", "axis3"], ["dist"], keepdims=0),  # (N, N, B)
        helper.make_node("Neg", ["dist"], ["negdist"]),
        helper.make_node("Exp", ["negdist"], ["e"]),
        helper.make_node("ReduceSum", ["e", "axis1"], ["total"], keepdims=0),  # (N, B), self term included
        helper.make_node("Constant", [], ["one_f"], value_float=1.0),
        helper.make_node("CastLike", ["one_f", "total"], ["one"]),
        helper.make_node("Sub", ["total", "one"], ["o"]),  # exp(0) = 1 exactly: drop the self term
    ]
    return helper.make_function(
        DOMAIN,
        "MinibatchDiscrimination",
        ["M"],
        ["o"],
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=["threads"],
    )


# Decompositions by op name, for models whose genrt ops cannot run natively.
FUNCTIONS = {"MinibatchDiscrimination": minibatch_discrimination_function}


def genrt_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The genrt-domain nodes of a model's main graph."""
    return [n for n in model.graph.node if n.domain == DOMAIN]


def _standard_opset(model: onnx.ModelProto) -> int:
    return max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] + [STANDARD_OPSET])


def inline_decompositions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Returns a copy whose genrt-domain ops are defined as model-local functions of standard ops."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    opset = _standard_opset(model)
    used = {n.op_type for n in genrt_nodes(model)}
    have = {(f.domain, f.name) for f in out.functions}
    for name in sorted(used):
        if name in FUNCTIONS and (DOMAIN, name) not in have:
            out.functions.append(FUNCTIONS[name](opset))
    if not any(o.domain in ("", "ai.onnx") for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("", opset))
    return out


def to_standard_ops(model: onnx.ModelProto) -> onnx.ModelProto:
    """The portable form of a model: genrt-domain nodes replaced by their standard-op decompositions, inlined."""
    import onnx.inliner

    out = onnx.inliner.inline_local_functions(inline_decompositions(model))
    if genrt_nodes(out):
        missing = sorted({n.op_type for n in genrt_nodes(out)})
        raise ValueError(f"no standard-op decomposition for genrt ops {missing}")
    keep = [o for o in out.opset_import if o.domain != DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(keep)
    return out
