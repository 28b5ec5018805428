"""In-context transformer estimators: encoding, the model, the constructed (exact) model, training, checkpoints."""
from bncompare.transformer.construct import DEFAULT_BETA, ConstructedTransformer, construct_model, error_bound
from bncompare.transformer.encoding import Layout, encode, onehots
from bncompare.transformer.estimator import TransformerEstimator
from bncompare.transformer.model import Block, InContextTransformer, TransformerConfig, init_weights

from bncompare.transformer.train import TrainConfig, train
from bncompare.transformer.checkpoint import load_checkpoint, save_checkpoint, trained_model
from bncompare.transformer.trained import TrainedTransformer
from bncompare.transformer.agnostic import StructureAgnosticTransformer
from bncompare.transformer.diagnostics import attention_to_parents
