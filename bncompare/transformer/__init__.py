"""In-context transformer estimators: encoding, the model, the constructed (exact) models, training, checkpoints."""
from bncompare.transformer.agnostic import StructureAgnosticTransformer
from bncompare.transformer.checkpoint import load_checkpoint, save_checkpoint, trained_model
from bncompare.transformer.construct import DEFAULT_BETA, ConstructedTransformer, construct_model, error_bound
from bncompare.transformer.diagnostics import attention_to_parents
from bncompare.transformer.encoding import Layout, encode, onehots
from bncompare.transformer.estimator import TransformerEstimator
from bncompare.transformer.gd_construct import ConstructedGD, GDTransformer, LinearSelfAttention
from bncompare.transformer.model import Block, InContextTransformer, TransformerConfig, init_weights
from bncompare.transformer.train import TrainConfig, TrainRun, train
from bncompare.transformer.trained import TrainedTransformer

__all__ = [
    "DEFAULT_BETA", "Block", "ConstructedTransformer", "InContextTransformer", "Layout", "StructureAgnosticTransformer",
    "TrainConfig", "TrainRun", "TrainedTransformer", "TransformerConfig", "TransformerEstimator",
    "attention_to_parents", "construct_model", "encode", "error_bound", "init_weights", "load_checkpoint", "onehots",
    "save_checkpoint", "train", "trained_model",
    "ConstructedGD", "GDTransformer", "LinearSelfAttention",
]
