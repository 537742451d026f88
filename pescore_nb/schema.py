"""The names of the pescore_nb Dataset: one place for every dimension, coordinate and variable.

Every evaluation produces one :class:`xarray.Dataset` with these names (see ``PESCORE.md``)::

    heatmap     (model, layer, method, image, y, x)  float32 in [0, 1]
    prob, pred  (model, image)                       softmax prob. of the target, predicted class
    ssim, iou, conf, pe, degenerate
                (model, layer, method, image)        per-image scores against the reference
    input       (image, channel, y, x)               uint8 picture of each input, for display

Coordinates on ``model``: ``ratio``, ``pruner``, ``params``, ``macs``, ``accuracy``;
on ``image``: ``label``, ``class_name``, ``index``. The reference model is ``model[0]``.
"""

MODEL, LAYER, METHOD, IMAGE, Y, X = "model", "layer", "method", "image", "y", "x"
CLASS = "class"
REFERENCE = "reference"

RATIO, PRUNER, PARAMS, MACS, ACCURACY = "ratio", "pruner", "params", "macs", "accuracy"
LABEL, CLASS_NAME, INDEX = "label", "class_name", "index"

HEATMAP = "heatmap"
PROB, PRED = "prob", "pred"
SSIM, IOU, CONF, PE = "ssim", "iou", "conf", "pe"
DEGENERATE = "degenerate"
INPUT, CHANNEL = "input", "channel"
ENERGY_IN_MASK = "energy_in_mask"

HEATMAP_DIMS = (MODEL, LAYER, METHOD, IMAGE, Y, X)
SCORE_DIMS = (MODEL, LAYER, METHOD, IMAGE)
OUTPUT_DIMS = (MODEL, IMAGE)
INPUT_DIMS = (IMAGE, CHANNEL, Y, X)
SCORE_VARIABLES = (SSIM, IOU, CONF, PE)

# Attribute a pruned model carries so that `evaluate` can fill the `model` coordinates:
# ``model.pescore_pruning = {"pruner": "l2", "ratio": 0.3}`` (set by ``pescore_nb.prune``).
PRUNING_ATTRIBUTE = "pescore_pruning"
UNPRUNED = "none"
SP2PS = "sp2ps"
