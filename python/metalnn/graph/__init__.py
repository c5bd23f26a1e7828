"""The graph API: image nodes, filter nodes, gradient nodes and graphs (as MPSNNGraph)."""

from .data_source_neuron import PReLUSlopes
from .data_source_normalization import (
    BatchNormalizationDataSource,
    BatchNormalizationWeights,
    NormalizationDataSource,
    NormalizationWeights,
)
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
from .nodes_loss import LossNode, YOLOLossNode
from .nodes_neuron import NeuronExponentialNode, NeuronLogarithmNode, NeuronPowerNode, NeuronPReLUNode
from .nodes_normalization import (
    BatchNormalizationNode,
    CrossChannelNormalizationNode,
    GroupNormalizationNode,
    InstanceNormalizationNode,
    LayerNormalizationNode,
)
from .nodes_pooling import DilatedPoolingMaxNode, PoolingL2NormNode
from .nodes_rnn import RNNNode, RNNWeights
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
    "AdditionNode", "BatchHandle", "BatchNormalizationDataSource", "BatchNormalizationNode",
    "BatchNormalizationWeights", "ConcatenationNode", "ConvolutionNode", "ConvolutionTransposeNode",
    "ConvolutionTransposeWeights", "CropNode", "CrossChannelNormalizationNode", "DilatedPoolingMaxNode",
    "DivisionNode", "DropoutNode", "FilterNode", "FlattenNode", "FullyConnectedNode", "GradientNode", "Graph",
    "GroupNormalizationNode", "ImageNode", "ImageToMatrixNode", "InstanceNormalizationNode", "LayerNormalizationNode",
    "LogSoftmaxNode", "LossNode", "MatrixToImageNode", "MultiplicationNode", "NeuronAbsoluteNode", "NeuronELUNode",
    "NeuronExponentialNode", "NeuronGeLUNode", "NeuronHardSigmoidNode", "NeuronLeakyReLUNode", "NeuronLinearNode",
    "NeuronLogarithmNode", "NeuronMishNode", "NeuronNode", "NeuronPReLUNode", "NeuronPowerNode", "NeuronReLUNNode",
    "NeuronReLUNode", "NeuronSELUNode", "NeuronSiLUNode", "NeuronSigmoidNode", "NeuronSoftPlusNode",
    "NeuronSoftSignNode", "NeuronTanHNode", "NormalizationDataSource", "NormalizationWeights", "PReLUSlopes",
    "PadNode", "Padding", "PoolingAverageNode", "PoolingL2NormNode", "PoolingMaxNode", "RNNNode", "RNNWeights",
    "ReshapeNode", "SliceNode", "SoftmaxCrossEntropyLossNode", "SoftmaxNode", "SubtractionNode",
    "UpsamplingBilinearNode", "UpsamplingNearestNode", "YOLOLossNode",
]
