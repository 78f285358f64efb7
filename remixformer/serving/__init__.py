"""Running a trained model on new cases: the Predictor (Python API), batch scoring, the web service."""

from remixformer.serving.predictor import CasePrediction, Predictor

__all__ = ["CasePrediction", "Predictor"]
