"""In-context transformer estimators: token encoding, the model, a constructed (exact) model, the estimator wrapper."""
from bncompare.transformer.construct import DEFAULT_BETA, ConstructedTransformer, construct_model, error_bound
from bncompare.transformer.encoding import Layout, attention_mask, encode, onehots
from bncompare.transformer.estimator import TransformerEstimator
from bncompare.transformer.model import Block, InContextTransformer, TransformerConfig, init_weights

