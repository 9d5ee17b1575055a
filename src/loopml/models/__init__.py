"""Models: the safe package format, signatures, flavors and references (DESIGN.md stage 3/4).

``save_package`` writes a directory with the model in a safe format (skops, native
xgboost/lightgbm, ONNX) and a ``loopml-model.yaml`` manifest listing every file's sha256;
``load_package`` verifies it and returns a :class:`~loopml.models.predictor.Predictor`. Pickle
is loaded only through :mod:`loopml.models.trust`. Nothing heavy is imported here.
"""
