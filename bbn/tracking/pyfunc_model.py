"""The file MLflow loads the pyfunc model from ("models from code": no pickled object in the model).

MLflow runs this file when the model is loaded; it names the model object with ``set_model``.
"""

from mlflow.models import set_model

from bbn.tracking.model import Classifier

set_model(Classifier())
