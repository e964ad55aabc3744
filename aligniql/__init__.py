"""AlignIQL: pretrained offline-RL agents that act by reweighting diffusion candidates with a learned Q/V."""

from aligniql._version import __version__
from aligniql.agent import AlignIQLAgent, Candidates
from aligniql.config import AlignIQLConfig
from aligniql.evaluation import EvalResult, evaluate

__all__ = ["AlignIQLAgent", "AlignIQLConfig", "Candidates", "EvalResult", "evaluate", "__version__"]
