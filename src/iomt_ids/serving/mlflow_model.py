"""MLflow "models from code" definition of a flow classifier.

MLflow runs this file when it loads a logged model, so the model is rebuilt
from its JSON config and safetensors weights instead of being unpickled.
The artifact ``classifier`` is a folder saved by ``FlowClassifier.save``.
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from iomt_ids.serving.flow_classifier import FlowClassifier


class FlowClassifierModel(PythonModel):
    """pyfunc wrapper: raw flow columns in, class names and probabilities out."""

    def load_context(self, context) -> None:
        self.classifier = FlowClassifier.load(context.artifacts["classifier"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.classifier.predict(pd.DataFrame(model_input))


mlflow.models.set_model(FlowClassifierModel())
