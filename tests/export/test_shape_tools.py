"""Exported graphs pass the shape tools deployment users run on them.

ONNX Runtime's symbolic shape inference (``onnxruntime.tools.symbolic_shape_infer``, run before
TensorRT / transformer optimizations) must shape every graph of every model family, down to the
graph outputs, keeping ``batch`` symbolic.
"""

from __future__ import annotations

import onnx
import pytest

from tests.export.conftest import one_per_family


@pytest.mark.parametrize("name", one_per_family())
def test_symbolic_shape_inference_shapes_every_graph(name, zoo_export):
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    result = zoo_export(name)
    for g in result.manifest.graphs:
        model = onnx.load(str(result.bundle / g.file))
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        assert inferred is not None, g.role
        shapes = {vi.name: vi.type.tensor_type.shape for vi in list(inferred.graph.output) + list(inferred.graph.value_info)}
        for spec in g.outputs:
            dims = shapes[spec.name].dim
            assert len(dims) == len(spec.shape), (g.role, spec.name)
            for d, expected in zip(dims, spec.shape):
                if isinstance(expected, int):
                    assert d.dim_value == expected, (g.role, spec.name, d)
                else:
                    assert d.dim_param, (g.role, spec.name, d)
