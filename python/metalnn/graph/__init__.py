"""The graph API: image nodes, filter nodes, gradient nodes and graphs (as MPSNNGraph)."""

from .data_source_neuron import PReLUSlopes
from .graph import BatchHandle, Graph
from .nodes import (
    AdditionNode,
    ConvolutionNode,
    DropoutNode,
    FilterNode,
    FullyConnectedNode,
    GradientNode,
    ImageNode,
    LogSoftmaxNode,
    NeuronAbsoluteNode,
    NeuronELUNode,
    NeuronGeLUNode,
    NeuronHardSigmoidNode,
    NeuronLeakyReLUNode,
    NeuronLinearNode,
    NeuronMishNode,
    NeuronNode,
    NeuronReLUNNode,
    NeuronReLUNode,
    NeuronSELUNode,
    NeuronSigmoidNode,
    NeuronSiLUNode,
    NeuronSoftPlusNode,
    NeuronSoftSignNode,
    NeuronTanHNode,
    PoolingAverageNode,
    PoolingMaxNode,
    SoftmaxCrossEntropyLossNode,
    SoftmaxNode,
)
from .nodes_arithmetic import DivisionNode, MultiplicationNode, SubtractionNode
from .nodes_conv_transpose import ConvolutionTransposeNode, ConvolutionTransposeWeights
from .nodes_neuron import NeuronExponentialNode, NeuronLogarithmNode, NeuronPowerNode, NeuronPReLUNode
from .nodes_loss import LossNode, YOLOLossNode
from .nodes_pooling import DilatedPoolingMaxNode, PoolingL2NormNode
from .nodes_shape import (
    ConcatenationNode,
    CropNode,
    FlattenNode,
    ImageToMatrixNode,
    MatrixToImageNode,
    PadNode,
    ReshapeNode,
    SliceNode,
    UpsamplingBilinearNode,
    UpsamplingNearestNode,
)
from .padding import Padding

__all__ = [
    "AdditionNode", "BatchHandle", "ConvolutionNode", "DropoutNode", "FilterNode", "FullyConnectedNode",
    "GradientNode", "Graph", "ImageNode", "LogSoftmaxNode", "NeuronAbsoluteNode", "NeuronELUNode",
    "NeuronGeLUNode", "NeuronHardSigmoidNode", "NeuronLeakyReLUNode", "NeuronLinearNode", "NeuronNode",
    "NeuronReLUNNode", "NeuronReLUNode", "NeuronSigmoidNode", "NeuronSoftPlusNode", "NeuronTanHNode", "Padding",
    "PoolingAverageNode", "PoolingMaxNode", "SoftmaxCrossEntropyLossNode", "SoftmaxNode",
]
__all__ += [
    "NeuronExponentialNode", "NeuronLogarithmNode", "NeuronMishNode", "NeuronPowerNode", "NeuronPReLUNode",
    "NeuronSELUNode", "NeuronSiLUNode", "NeuronSoftSignNode", "PReLUSlopes",
]
__all__ += ["ConvolutionTransposeNode", "ConvolutionTransposeWeights", "DilatedPoolingMaxNode", "PoolingL2NormNode"]
__all__ += ["LossNode", "YOLOLossNode"]
__all__ += ["ConcatenationNode", "CropNode", "DivisionNode", "FlattenNode", "ImageToMatrixNode", "MatrixToImageNode",
            "MultiplicationNode", "PadNode", "ReshapeNode", "SliceNode", "SubtractionNode", "UpsamplingBilinearNode",
            "UpsamplingNearestNode"]
from .data_source_normalization import BatchNormalizationDataSource, BatchNormalizationWeights, NormalizationDataSource, NormalizationWeights  # noqa: E402,E501
from .nodes_normalization import BatchNormalizationNode, CrossChannelNormalizationNode, GroupNormalizationNode, InstanceNormalizationNode, LayerNormalizationNode  # noqa: E402,E501
__all__ += ["BatchNormalizationDataSource", "BatchNormalizationNode", "BatchNormalizationWeights", "CrossChannelNormalizationNode", "GroupNormalizationNode", "InstanceNormalizationNode", "LayerNormalizationNode", "NormalizationDataSource", "NormalizationWeights"]  # noqa: E501
