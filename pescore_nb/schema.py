"""The names of the pescore_nb Dataset: one place for every dimension, coordinate and variable.

Every evaluation produces one :class:`xarray.Dataset` with these names::

    heatmap     (model, layer, cam, image, y, x)  float32 in [0, 1]
    prob, pred  (model, image)                    softmax prob. of the target, predicted class
    ssim, iou, conf, pe, degenerate
                (model, layer, cam, image)        per-image scores against the reference
    input       (image, channel, y, x)            uint8 picture of each input, for display

Coordinates on ``model``: ``role`` (``reference``, ``candidate``, ``control``), ``ratio``,
``pruner``, ``params``, ``macs``, ``accuracy``, ``images_digest`` (the images it was evaluated on), ``seed`` (the fine-tuning seed; -1 for models
without one: the reference, the twin, randomised copies, user models), ``provenance`` (JSON: pruning
seed, fine-tuning recipe, data digest); on ``image``: ``label``, ``class_name``, ``source_index``. The reference is
the model whose ``role`` is ``reference`` (see :mod:`pescore_nb.structure`), wherever it stands.
"""

SCHEMA_VERSION = 3  # attrs["schema_version"]; 2: no "seed" coordinate; 1: dims "method"/"class", coord "index", no roles
SCHEMA_VERSION_ATTRIBUTE = "schema_version"


class SchemaUpgradeWarning(UserWarning):
    """A Dataset written by an older pescore_nb was read with today's names (said once, with what changed)."""


MODEL, LAYER, CAM, IMAGE, Y, X = "model", "layer", "cam", "image", "y", "x"
REFERENCE = "reference"

ROLE, RATIO, PRUNER, PARAMS, MACS, ACCURACY = "role", "ratio", "pruner", "params", "macs", "accuracy"
PROVENANCE = "provenance"
IMAGES_DIGEST = "images_digest"  # 16 hex digits of the 64-bit hashes of the images a model was evaluated on
SEED = "seed"  # the fine-tuning seed of a model made by prune.sweep
NO_SEED = -1   # the seed coordinate of models without one
SEED_SEPARATOR = "/seed"  # with several seeds: "l2@0.10/seed0", "control:finetune/seed0"
CANDIDATE, CONTROL = "candidate", "control"
ROLES = (REFERENCE, CANDIDATE, CONTROL)
LABEL, CLASS_NAME, SOURCE_INDEX = "label", "class_name", "source_index"

HEATMAP = "heatmap"
PROB, PRED = "prob", "pred"
SSIM, IOU, CONF, PE = "ssim", "iou", "conf", "pe"
DEGENERATE = "degenerate"
INPUT, CHANNEL = "input", "channel"
ENERGY_IN_MASK = "energy_in_mask"
SP2PS = "sp2ps"

HEATMAP_DIMS = (MODEL, LAYER, CAM, IMAGE, Y, X)
SCORE_DIMS = (MODEL, LAYER, CAM, IMAGE)
OUTPUT_DIMS = (MODEL, IMAGE)
INPUT_DIMS = (IMAGE, CHANNEL, Y, X)
SCORE_VARIABLES = (SSIM, IOU, CONF, PE)

# Names of schema version 1, renamed by `pescore_nb.load`: old name -> new name.
LEGACY_NAMES = {"method": CAM, "class": LABEL, "index": SOURCE_INDEX}

# Attribute a pruned model carries so that `evaluate` can fill the `model` coordinates:
# ``model.pescore_pruning = {"pruner": "l2", "ratio": 0.3, "role": "candidate", "seed": 0, "params": ...,
# "macs": ..., "provenance": {...}}`` (set by ``pescore_nb.prune``).
PRUNING_ATTRIBUTE = "pescore_pruning"
UNPRUNED = "none"
UNKNOWN_PRUNER = "unknown"

# Names of the controls that calibrate the trust rule (role ``control``, ratio 0, pruner ``none``).
CONTROL_FINETUNE = "control:finetune"  # the reference put through the candidates' fine-tuning, unpruned
CONTROL_TWIN = "control:twin"          # the same architecture and recipe, trained with another seed
RANDOMISED_PREFIX = "control:randomised@"  # + a layer: weights re-initialised from the last layer down to it


def seeded_name(name: str, seed: int) -> str:
    """The name of one fine-tuning seed's model when a sweep has several: ``"l2@0.10/seed0"``."""
    return f"{name}{SEED_SEPARATOR}{seed}"


# What each name of a results Dataset holds, in one line: the documentation's schema tables read it
# (and list any variable, coordinate or attribute that evaluate writes without an entry here).
DESCRIPTIONS = {
    HEATMAP: "the CAM of the target class in [0, 1] (float32, or smaller and float16 when asked)",
    PROB: "softmax probability of the target class",
    PRED: "predicted class",
    SSIM: "SSIM of the model's map and the reference's",
    IOU: "IoU of the two maps' masks (heatmap >= iou_threshold)",
    CONF: "1 - |p_reference - p_model| of the target class",
    PE: "the PE-score of the image: SSIM, IoU and Conf combined",
    SP2PS: "the Sp2PS score (only with sp2ps_config)",
    DEGENERATE: "True where either map had no signal (constant after ReLU)",
    ENERGY_IN_MASK: "share of the map's energy inside the object mask (data with masks)",
    INPUT: "the picture, uint8, for display",
    MODEL: "the models' names: the reference, the candidates and the controls",
    LAYER: "qualified module names of the explained layers",
    CAM: "the CAM methods",
    IMAGE: "the images' positions in the evaluation",
    Y: "map and picture rows",
    X: "map and picture columns",
    CHANNEL: "the picture's colour channels",
    ROLE: "reference, candidate or control: the reference is found by its role",
    RATIO: "pruning ratio (0 for the reference and the controls)",
    PRUNER: f"pruning method ('{UNPRUNED}' for the reference and controls, '{UNKNOWN_PRUNER}' for models of "
            "unknown origin)",
    SEED: f"the fine-tuning seed ({NO_SEED} for models without one)",
    PARAMS: "number of parameters",
    MACS: "multiply-accumulates of one forward pass",
    ACCURACY: "share of the evaluated images the model classifies as labelled",
    PROVENANCE: "JSON: pruning seed, fine-tuning recipe, digests of the data used",
    IMAGES_DIGEST: "16 hex digits of the 64-bit hashes of the images the model was evaluated on",
    LABEL: "the true class",
    CLASS_NAME: "the class's name",
    SOURCE_INDEX: "the image's position in the source dataset",
    SCHEMA_VERSION_ATTRIBUTE: "this schema's version",
    "pe_config": "JSON: the PEConfig the scores were computed with",
    "sp2ps_config": "JSON: the Sp2PSConfig (only with sp2ps_config)",
    "reference_name": "the reference model's class name",
    "versions": "JSON: the versions of pescore_nb, torch, torchvision, grad-cam, xarray and numpy",
    "input_height": "input images' height in pixels",
    "input_width": "input images' width in pixels",
    "outputs": "what the models return: auto, logits or probabilities",
    "allow_overlap": "1 when a model was evaluated on images it was pruned or fine-tuned on (allow_overlap=True)",
    "training_overlaps": "JSON: how many evaluated images each model was pruned or fine-tuned on",
    "dataset_name": "the evaluated data set's name, when the dataset has one (its name attribute)",
}
