from .pruning import DATA_PRUNERS, PRUNABLE, PRUNERS, FilterNormImportance, Finetune, SeededRandomImportance, sweep
